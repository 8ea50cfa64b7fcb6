"""Last-timestamp records the keeper did not write: corrupted, hand-edited, written by
another implementation. The keeper reports such a record and leaves its machine ID alone
(``idgen.bad_record``); it must never crash on one (every generator of the fleet scans
every record, so one bad record would stop them all), nor read one as permission to
issue IDs its previous owner may have issued."""

from __future__ import annotations

import json

import pytest
import trio

from gochat_actors.idgen import IdGenerator, IdGenSettings, MemoryEtcd, TrioIdClock
from supervisors import open_supervisor

TTL, MARGIN = 9.0, 1.5
PREFIX = "/ids/"
WALL_MS = 1_700_000_000_000
TWO_IDS = {"timestamp_bits": 50, "machine_bits": 1, "sequence_bits": 12}


def make(etcd: MemoryEtcd) -> IdGenerator:
    settings = IdGenSettings.model_validate(
        {"etcd": "memory://", "lease_ttl": TTL, "margin": MARGIN, "key_prefix": PREFIX, **TWO_IDS}
    )
    return IdGenerator(settings, backend=etcd, clock=TrioIdClock(WALL_MS))


BAD_RECORDS = {
    "infinite last_ms": b'{"owner":"x","last_ms":1e999,"ttl_ms":3000}',
    "Infinity last_ms": b'{"owner":"x","last_ms":Infinity,"ttl_ms":3000}',
    "infinite ttl_ms": b'{"owner":"x","last_ms":1,"ttl_ms":-1e999}',
    "nested too deep": b"[" * 100_000 + b"]" * 100_000,
    "object nested too deep": b'{"owner":' * 100_000 + b"1" + b"}" * 100_000,
}


@pytest.mark.parametrize("raw", list(BAD_RECORDS.values()), ids=list(BAD_RECORDS))
async def test_a_bad_record_costs_its_machine_id_not_the_generator(
    raw: bytes, autojump_clock: trio.abc.Clock
) -> None:
    etcd = MemoryEtcd()
    await etcd.put(f"{PREFIX}last/0".encode(), raw)
    ids = make(etcd)
    with trio.fail_after(5 * TTL):
        async with open_supervisor([ids.spec()]):
            assert ids.machine_id == 1  # ID 0's record cannot be trusted: left alone
            ids.next_id()


async def test_a_final_flag_that_is_not_a_boolean_is_not_final(
    autojump_clock: trio.abc.Clock,
) -> None:
    """``"final": "false"`` is a bad record, not a final one: read as final, the next
    owner would start 1 ms after ``last_ms`` instead of after ``last_ms + ttl_ms``, inside
    the window the previous owner may still have issued in."""
    etcd = MemoryEtcd()
    last_ms, ttl_ms = WALL_MS + 5_000, 60_000
    record = {"owner": "x", "last_ms": last_ms, "ttl_ms": ttl_ms, "final": "false"}
    await etcd.put(f"{PREFIX}last/0".encode(), json.dumps(record).encode())
    lease, _ = await etcd.lease_grant(10**7)
    await etcd.put(f"{PREFIX}1".encode(), b'{"owner":"other"}', lease=lease)  # ID 1 held
    ids = make(etcd)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ids.run)
        with trio.move_on_after(3 * TTL):
            await ids.wait_ready()
            while True:  # whatever it issues under ID 0 is past the previous owner's window
                parts = ids.parse(ids.next_id())
                assert parts.machine_id != 0 or parts.timestamp_ms > last_ms + ttl_ms, parts
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
