"""Generators on the real etcd: many OS processes, 1,024 holders, shutdown."""

from __future__ import annotations

import array
import itertools
import json
import multiprocessing
import random
from pathlib import Path

import pytest
import trio

from gochat_actors import Dsn, MachineIdLost
from gochat_actors.idgen import IdGenerator, IdGenSettings, Put, SystemClock, prefix_end
from gochat_actors.idgen._etcd import HttpEtcd
from supervisors import open_supervisor
from tests.gochat_actors.idgen import _worker
from tests.gochat_actors.idgen._late import LateEtcd

PROCESSES, PER_PROCESS = 20, 100_000


class BehindClock(SystemClock):
    """The system clocks, the wall clock ``seconds`` behind (another host's)."""

    def __init__(self, seconds: float) -> None:
        self.behind_ns = round(seconds * 1e9)

    def wall_ns(self) -> int:
        return super().wall_ns() - self.behind_ns


def test_many_processes_distinct_machine_ids_and_no_duplicate(
    etcd_url: str, etcd_key_prefix: str, tmp_path: Path
) -> None:
    ctx = multiprocessing.get_context("forkserver")
    # children fork from one process that imported these once (httpx included)
    ctx.set_forkserver_preload(["tests.gochat_actors.idgen._worker", "gochat_actors.idgen._etcd"])
    pipes = [ctx.Pipe() for _ in range(PROCESSES)]
    procs = [
        ctx.Process(
            target=_worker.work,
            args=(etcd_url, etcd_key_prefix, str(tmp_path / f"{n}.ids"), PER_PROCESS, child),
        )
        for n, (_, child) in enumerate(pipes)
    ]
    try:
        for proc in procs:
            proc.start()
        machine_ids = []
        for proc, (conn, _) in zip(procs, pipes, strict=True):
            # every process holds its machine ID before any generates
            assert conn.poll(60), f"worker {proc.pid} not ready (exit code {proc.exitcode})"
            what, machine_id = conn.recv()
            assert what == "ready"
            machine_ids.append(machine_id)
        assert len(set(machine_ids)) == PROCESSES, machine_ids
        for conn, _ in pipes:
            conn.send("go")
        for proc, (conn, _) in zip(procs, pipes, strict=True):
            assert conn.poll(60), f"worker {proc.pid} did not finish"
            assert conn.recv() == ("done", PER_PROCESS)
            proc.join(30)
            assert proc.exitcode == 0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    layout = IdGenerator(IdGenSettings()).layout
    every: set[int] = set()
    for n, machine_id in enumerate(machine_ids):
        got = array.array("q")
        got.frombytes((tmp_path / f"{n}.ids").read_bytes())
        ids = got.tolist()
        assert len(ids) == PER_PROCESS
        assert all(a < b for a, b in itertools.pairwise(ids))
        assert {layout.parse(i).machine_id for i in ids[:: PER_PROCESS // 10]} == {machine_id}
        every.update(ids)
    assert len(every) == PROCESSES * PER_PROCESS


async def test_1024_holders_then_exhaustion(etcd_url: str, etcd_key_prefix: str) -> None:
    """1,023 IDs held by other leases (claimed by hand, like other processes would), one
    free at an unknown place: a generator finds it; the next one gets the error."""
    settings = IdGenSettings(etcd=Dsn(etcd_url), key_prefix=etcd_key_prefix)
    prefix = etcd_key_prefix.encode()
    free = random.randrange(1024)
    backend = HttpEtcd(etcd_url)
    try:
        leases = [(await backend.lease_grant(60))[0] for _ in range(8)]
        held = [m for m in range(1024) if m != free]
        for n, lease in enumerate(leases):  # etcd allows 128 operations per txn
            puts = [Put(prefix + b"%d" % m, b'{"owner":"other"}', lease) for m in held[n::8]]
            assert (await backend.txn([], puts)).succeeded
        last = IdGenerator(settings)
        late = IdGenerator(settings)
        async with open_supervisor([last.spec()]):
            assert last.machine_id == free
            async with open_supervisor([late.spec()]) as sup:  # starts, and waits
                assert not late.ready
                [child] = sup.which_children()
                assert "all 1024 machine IDs" in child.health_reason
                assert not sup.health().ready
        for lease in leases:
            assert await backend.lease_revoke(lease)
        assert await backend.range(prefix + b"0", prefix + b":", keys_only=True) == []
    finally:
        await backend.aclose()


async def test_shutdown_frees_the_machine_id_at_once(etcd_url: str, etcd_key_prefix: str) -> None:
    settings = IdGenSettings(etcd=Dsn(etcd_url), key_prefix=etcd_key_prefix, lease_ttl=10.0)
    ids = IdGenerator(settings)
    async with open_supervisor([ids.spec()]):
        machine_id = ids.machine_id
        last = ids.next_id()
    backend = HttpEtcd(etcd_url)
    try:
        prefix = etcd_key_prefix.encode()
        keys = [kv.key for kv in await backend.range(prefix, prefix_end(prefix))]
        assert keys == [prefix + f"last/{machine_id}".encode()]
    finally:
        await backend.aclose()
    again = IdGenerator(settings)
    async with open_supervisor([again.spec()]):
        assert again.next_id() > last or again.machine_id != machine_id


async def test_a_renewal_applied_late_never_rolls_the_record_back(
    etcd_url: str, etcd_key_prefix: str
) -> None:
    """Issue 27 point 13 on the real etcd: a renewal's record write the client gave up
    on reaches etcd after newer ones; ``last/<m>`` must not go back, or the next owner
    of the machine ID issues under timestamps the crashed owner already used."""
    ttl = 2.0  # etcd's smallest lease TTL
    settings = IdGenSettings(
        etcd=Dsn(etcd_url),
        key_prefix=etcd_key_prefix,
        lease_ttl=ttl,
        margin=0.5,
        timestamp_bits=50,
        machine_bits=1,
        sequence_bits=12,
    )
    prefix = etcd_key_prefix.encode()
    http = HttpEtcd(etcd_url)
    etcd = LateEtcd(HttpEtcd(etcd_url))
    try:
        lease, _ = await http.lease_grant(60)
        await http.put(prefix + b"1", b'{"owner":"other"}', lease=lease)  # only ID 0 is free
        a = IdGenerator(settings, backend=etcd)
        a_ids: list[int] = []
        async with open_supervisor([a.spec()]):
            a_ids += a.next_ids(100)
            etcd.hold_requests()  # the next renewal's record write is kept back
            with trio.fail_after(5 * ttl):
                while not etcd.held:  # noqa: ASYNC110 (polling a counter)
                    await trio.sleep(0.01)
            etcd.stop_holding()
            held_at = a._now_ms()  # about the last_ms of the write kept back
            with trio.fail_after(10 * ttl):  # issue on, well past that last_ms + ttl_ms
                while a.parse(a_ids[-1]).timestamp_ms <= held_at + 1.5 * ttl * 1000:
                    if a.ready:
                        a_ids += a.next_ids(100)
                    await trio.sleep(0.01)
                renewals = a.statistics().renewals
                while a.statistics().renewals == renewals:  # noqa: ASYNC110
                    await trio.sleep(0.005)
            a_ids += a.next_ids(100)
            assert await etcd.apply_held() == 1  # etcd gets the old write now ...
            etcd.failing = True  # ... and a crashes: no final record, no revoke
        [saved] = await http.range(prefix + b"last/0")
        # every ID of the owner is within last_ms + ttl_ms of its record
        last = json.loads(saved.value)
        assert last["last_ms"] + last["ttl_ms"] >= a.parse(max(a_ids)).timestamp_ms
        with trio.fail_after(3 * ttl + 5):  # a's lease expires with its claim
            while await http.range(prefix + b"0"):  # noqa: ASYNC110 (a server's state)
                await trio.sleep(0.05)
        b = IdGenerator(settings, clock=BehindClock(2 * ttl))  # another host, behind
        async with open_supervisor([b.spec()]):
            assert b.machine_id == 0
            b_ids = b.next_ids(100)
        assert min(b_ids) > max(a_ids)
        await http.lease_revoke(lease)
    finally:
        await etcd.aclose()
        await http.aclose()


async def test_exhaustion_waits_until_an_id_frees(etcd_url: str, etcd_key_prefix: str) -> None:
    """Issue 22 point 2 on the real etcd: machine_bits=1 and three holders; the third
    starts, waits (readiness says why), and takes the ID the first one frees."""
    settings = IdGenSettings(
        etcd=Dsn(etcd_url),
        key_prefix=etcd_key_prefix,
        lease_ttl=3.0,
        margin=0.5,
        timestamp_bits=50,
        machine_bits=1,
        sequence_bits=12,
    )
    a, b, c = (IdGenerator(settings) for _ in range(3))
    async with (
        open_supervisor([a.spec("a"), b.spec("b")]) as holders,
        open_supervisor([c.spec("c")]) as sup,
    ):
        assert not c.ready
        [child] = sup.which_children()
        assert "all 2 machine IDs" in child.health_reason
        assert "waiting for one to free" in child.health_reason
        assert not sup.health().ready
        with pytest.raises(MachineIdLost, match="waiting for one to free"):
            c.next_id()
        freed = a.machine_id
        last = a.next_id()
        await holders.terminate_child("a")  # a stops cleanly: its ID is free at once
        await c.wait_ready(timeout=10.0)
        assert c.machine_id == freed
        assert c.next_id() > last
        assert sup.health().ready
        assert sup.which_children()[0].restarts == 0
