"""Tests written for the survivors of the mutation run of ``gochat_actors/idgen``
(``make mutants MODULE=gochat_actors/idgen``; see docs/testing.md, "Mutation runs", and
docs/mutants.md). Each test names the mutants it kills (``_generator.py``, then
``_keeper.py``); each was seen failing with its mutants and passing without, with
``scripts/mutants.py gochat_actors/idgen --tests ... --check "" MUTANT...``.

The generator's clock is a :class:`StepClock` (monotonic time moving a fixed step per
read); the keeper's tests call its methods on an in-memory etcd, with trio's
``autojump_clock`` where latency matters: no sleeps, no timing bounds.
"""

from __future__ import annotations

import math
import re

import pytest
import structlog
import trio
import trio.testing

from gochat_actors import (
    ClockBehind,
    IdGenError,
    IdGenUnavailable,
    MachineIdLost,
    MachineIdsExhausted,
)
from gochat_actors.idgen import IdGenerator, IdGenSettings, MemoryEtcd, TrioIdClock, _generator
from gochat_actors.idgen._generator import GeneratorLease
from gochat_actors.idgen._keeper import _Claim, _decode, _encode, _Keeper, _Record
from gochat_actors.idgen._protocol import KeyValue, TxnResult
from gochat_actors.metrics import Metrics
from supervisors import ChildSpec, Health, open_supervisor

WALL_MS = 1_700_000_000_000
PER_MS = 4096  # the default layout's 12 sequence bits


class StepClock:
    """Monotonic time that moves ``step_ns`` per read; a fixed wall clock."""

    def __init__(self, step_ns: int) -> None:
        self.now = 0
        self.step_ns = step_ns

    def monotonic_ns(self) -> int:
        self.now += self.step_ns
        return self.now

    def wall_ns(self) -> int:
        return WALL_MS * 1_000_000


def per_ms(ids: IdGenerator, got: list[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for i in got:
        ms = ids.parse(i).timestamp_ms
        counts[ms] = counts.get(ms, 0) + 1
    return counts


def test_next_id_alone_uses_every_sequence_number_of_a_millisecond() -> None:
    """100 ns per read: next_id fills each millisecond's 4096 sequence numbers before
    waiting for the next one. Kills ``IdGenerator.next_id`` 12 (the last one skipped)."""
    ids = IdGenerator(IdGenSettings(), clock=StepClock(100))
    got = [ids.next_id() for _ in range(3 * PER_MS)]
    assert got == sorted(set(got))
    assert max(per_ms(ids, got).values()) == PER_MS


def test_a_batch_fills_whole_milliseconds_and_has_exactly_n_ids() -> None:
    """A batch one over a millisecond's worth: a full millisecond, then one more ID.
    Kills ``IdGenerator.next_ids`` 12 (fewer per ms), 15 (the last ID dropped)."""
    ids = IdGenerator(IdGenSettings(), clock=StepClock(100))
    got = ids.next_ids(PER_MS + 1)
    assert len(got) == PER_MS + 1
    assert got == sorted(set(got))
    assert sorted(per_ms(ids, got).values()) == [1, PER_MS]
    assert len(ids.next_ids(1)) == 1


def test_batches_take_the_clocks_millisecond_and_share_one_until_it_is_full() -> None:
    """Two small batches in one millisecond share it; after 10 ms the next batch is
    stamped 10 ms later. Kills ``IdGenerator.next_ids`` 20 (the offset subtracted), 29
    (every batch waiting for a new millisecond)."""
    clock = StepClock(1)
    ids = IdGenerator(IdGenSettings(), clock=clock)
    first = ids.next_ids(2)
    second = ids.next_ids(2)
    assert first + second == sorted(set(first + second))
    assert {ids.parse(i).timestamp_ms for i in first + second} == {WALL_MS}
    clock.now += 10_000_000
    (later,) = ids.next_ids(1)
    assert ids.parse(later).timestamp_ms == WALL_MS + 10


def test_a_frozen_clock_is_a_clock_behind_error_that_says_so() -> None:
    """A millisecond used up and a clock that never moves: ``ClockBehind``, saying how
    long the spin took and what freezes a clock. Kills ``IdGenerator._wait_next_ms`` 5
    (its start time lost), 20 (the time passed added) and 22-24 (the hint's
    wording)."""
    clock = StepClock(0)
    clock.now = 7_000_000  # frozen at 7 ms: a sum instead of a difference shows
    ids = IdGenerator(IdGenSettings(), clock=clock)
    ids.next_ids(PER_MS)
    with pytest.raises(ClockBehind) as info:
        ids.next_id()
    assert str(info.value).endswith(
        "(0 ms passed): is it frozen (a test clock outside trio's run loop, or more IDs "
        "in one virtual ms than it holds)?"
    ), info.value


def test_a_bad_batch_size_names_its_type() -> None:
    """Kills ``IdGenerator.next_ids`` 4."""
    ids = IdGenerator(IdGenSettings())
    with pytest.raises(TypeError, match=r"^n must be an int, got str$"):
        ids.next_ids("3")  # type: ignore[arg-type]


# -- the lease's deadline and the clock-behind bound (_generator.py) ------------------------

MS = 1_000_000


def leased(clock: StepClock, valid_until_ns: int, floor_ms: int = 0) -> IdGenerator:
    """A leased generator (not running) holding machine ID 5 until ``valid_until_ns``,
    installed by hand as its keeper would. The StepClock starts at 0 and its first read
    (1 ns) is the wall clock's ``WALL_MS``: Unix ms = ``WALL_MS + (ns - 1) // MS``."""
    ids = IdGenerator(IdGenSettings.model_validate({"etcd": "memory://"}), clock=clock)
    ids._install(5, floor_ms)
    ids._extend(valid_until_ns)
    return ids


def test_no_batch_id_at_the_exact_nanosecond_the_lease_ends() -> None:
    """The deadline is exclusive: a batch whose clock read is the deadline itself is
    refused, even though it starts a new millisecond. Kills ``IdGenerator.next_ids`` 17
    (``>`` instead of ``>=``)."""
    deadline = 1 + 2 * MS  # the first nanosecond of WALL_MS + 2
    clock = StepClock(1)
    ids = leased(clock, deadline)
    clock.now = deadline - 2
    assert len(ids.next_ids(1)) == 1  # read deadline - 1: still valid
    with pytest.raises(MachineIdLost):
        ids.next_ids(1)  # read deadline
    assert ids.statistics().issued == 1


def test_no_id_at_the_exact_nanosecond_the_lease_ends_after_a_full_millisecond() -> None:
    """A millisecond used up; waiting for the next one, the clock reaches it at the
    deadline's very nanosecond: refused, not issued. Kills ``IdGenerator._wait_next_ms``
    8 (``>`` instead of ``>=``)."""
    deadline = 1 + 2 * MS
    clock = StepClock(1)
    ids = leased(clock, deadline)
    clock.now = MS  # WALL_MS + 1
    ids.next_ids(PER_MS)
    clock.now = deadline - 3  # next_id reads deadline - 2, the wait deadline - 1, deadline
    with pytest.raises(MachineIdLost):
        ids.next_id()
    assert ids.statistics().issued == PER_MS


def test_a_clock_one_ms_behind_is_waited_for_two_ms_behind_is_an_error() -> None:
    """After an install whose floor is ahead of the clock, the next ID waits for a clock
    one millisecond behind the last one used, and refuses one two behind with
    ``ClockBehind`` naming both. Kills ``IdGenerator._wait_next_ms`` 15 (one behind
    refused), 16 (two behind waited for), 17 (the message lost)."""
    clock = StepClock(1000)
    ids = leased(clock, 1 << 62, floor_ms=WALL_MS + 2)  # last used: WALL_MS + 1
    first = ids.next_id()  # the clock, at WALL_MS, is one behind: wait
    assert ids.parse(first).timestamp_ms == WALL_MS + 2
    assert ids.parse(first).machine_id == 5
    clock = StepClock(1000)
    ids = leased(clock, 1 << 62, floor_ms=WALL_MS + 3)  # last used: WALL_MS + 2
    with pytest.raises(
        ClockBehind,
        match=rf"^the clock \({WALL_MS} ms\) is behind the last issued timestamp "
        rf"\({WALL_MS + 2} ms\)$",
    ):
        ids.next_id()


def test_the_frozen_clock_message_counts_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock moving 1 ns per read, ten reads allowed: 11 ns pass, 1.1e-05 ms. Kills
    ``IdGenerator._wait_next_ms`` 19 (nanoseconds times a million)."""
    monkeypatch.setattr(_generator, "_MAX_SPINS", 10)
    clock = StepClock(1)
    ids = IdGenerator(IdGenSettings(), clock=clock)
    ids.next_ids(PER_MS)
    with pytest.raises(ClockBehind, match=r"in 10 reads \(1\.1e-05 ms passed\)"):
        ids.next_id()


def test_compose_is_parse_reversed() -> None:
    """Kills ``IdGenerator.compose`` 1-6 (an argument dropped or replaced)."""
    ids = IdGenerator(IdGenSettings())
    i = ids.compose(WALL_MS + 7, 3, 11)
    assert (ids.parse(i).timestamp_ms, ids.parse(i).machine_id, ids.parse(i).sequence) == (
        WALL_MS + 7,
        3,
        11,
    )


# -- the keeper (_keeper.py) ----------------------------------------------------------------

OWNER_RECORD = b'{"owner":"me","last_ms":5,"ttl_ms":0,"final":false}'


def keeper_of(ids: IdGenerator, etcd: MemoryEtcd | None = None) -> _Keeper:
    """A keeper for ``ids`` (its owner named "me", its keys under ``/ids/``), not run."""
    assert ids.settings.key_prefix == "/gochat/machine_ids/"
    ids.owner = "me"
    keeper = _Keeper(GeneratorLease(ids), etcd if etcd is not None else MemoryEtcd())
    keeper.prefix = b"/ids/"
    return keeper


def test_a_record_is_compact_json_with_a_zero_ttl_by_default() -> None:
    """The record's bytes, as other versions read them from etcd. Kills ``_encode`` 1
    (the default ttl_ms 1), 14 and 16 (the separators lost: spaced JSON)."""
    assert _encode("me") == b'{"owner":"me"}'
    assert _encode("me", 5) == OWNER_RECORD
    assert _encode("me", 5, 7, True) == b'{"owner":"me","last_ms":5,"ttl_ms":7,"final":true}'


def test_decode_reads_a_record_without_final_and_a_zero_ttl() -> None:
    """``final`` absent is false; ``ttl_ms`` 0 is valid. Kills ``_decode`` 16, 18
    (absent ``final`` a bad record), 21 (absent ``final`` true), 31, 32 (``ttl_ms`` 0
    a bad record)."""
    assert _decode(b'{"owner":"o","last_ms":5,"ttl_ms":7}') == _Record("o", 5, 7, False)
    assert _decode(OWNER_RECORD) == _Record("me", 5, 0, False)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"owner":5,"last_ms":5,"ttl_ms":7,"final":false}',
        b'{"owner":"o","last_ms":"5","ttl_ms":7,"final":false}',
        b'{"owner":"o","last_ms":5,"ttl_ms":"7","final":false}',
        b'{"owner":"o","last_ms":5,"ttl_ms":-1,"final":false}',
        b'{"owner":"o","last_ms":5,"ttl_ms":7,"final":"false"}',
    ],
)
def test_decode_refuses_a_record_with_any_one_bad_field(raw: bytes) -> None:
    """Each field checked on its own: one bad field is a bad record. Kills ``_decode`` 23,
    24, 25, 26 (an ``and`` of the checks made an ``or``)."""
    assert _decode(raw) is None


def moved(claims: list[KeyValue] | None, records: list[KeyValue] | None) -> TxnResult:
    return TxnResult(False, 9, (claims, records))


CLAIM = KeyValue(b"/ids/5", b'{"owner":"me"}', 3, 4, 1, lease=1)


def record_kv(value: bytes) -> KeyValue:
    return KeyValue(b"/ids/last/5", value, 2, 8, 2)


def test_a_guarded_write_that_failed_tells_a_lost_claim_from_a_moved_record() -> None:
    """``_record_moved``: the claim gone; the record gone, unreadable or another
    owner's (all lose the ID); or our own late write (its mod revision, logged). Kills
    ``_Keeper._record_moved`` 7, 10, 12, 15, 18, 19, 23 and 24-31 (the log line)."""
    keeper = keeper_of(IdGenerator(IdGenSettings()))
    claim = _Claim(5, 3, 0)
    with pytest.raises(MachineIdLost, match=r"^the claim on machine ID 5 is gone$"):
        keeper._record_moved(claim, moved([], [record_kv(OWNER_RECORD)]))
    other = b'{"owner":"other","last_ms":5,"ttl_ms":0,"final":false}'
    for records in ([], None, [record_kv(b"garbage")], [record_kv(other)]):
        with pytest.raises(
            MachineIdLost, match=r"^the record of machine ID 5 was changed by another writer$"
        ):
            keeper._record_moved(claim, moved([CLAIM], records))
    with structlog.testing.capture_logs() as logs:
        assert keeper._record_moved(claim, moved([CLAIM], [record_kv(OWNER_RECORD)])) == 8
    assert [(e["event"], e["machine_id"], e["last_ms"]) for e in logs] == [
        ("idgen.record_moved", 5, 5)
    ]


async def test_a_failure_reports_degraded_while_issuing_failed_after() -> None:
    """``_failed``: counted, logged (what, the error, whether IDs are still issued) and
    the health DEGRADED while issuing, FAILED once not. Kills ``_Keeper._failed`` 1-4,
    6-8, 10, 12-14."""
    issuing_ids, stopped_ids = leased(StepClock(1), 1 << 62), leased(StepClock(1), 0)
    issuing, stopped = keeper_of(issuing_ids), keeper_of(stopped_ids)

    async def child(keeper: _Keeper) -> None:
        keeper._failed("renewal", IdGenUnavailable("boom"))
        await trio.sleep_forever()

    with structlog.testing.capture_logs() as logs:
        async with open_supervisor(
            [
                ChildSpec("issuing", child, args=(issuing,)),
                ChildSpec("stopped", child, args=(stopped,)),
            ]
        ) as sup:
            await trio.testing.wait_all_tasks_blocked()
            health = {c.id: (c.health, c.health_reason) for c in sup.which_children()}
    assert health == {
        "issuing": (Health.DEGRADED, "renewal failed: boom"),
        "stopped": (Health.FAILED, "renewal failed: boom"),
    }
    failed = [
        (e["error"], e["still_issuing"]) for e in logs if e["event"] == "idgen.renewal_failed"
    ]
    assert sorted(failed) == [("boom", False), ("boom", True)]
    assert issuing_ids.ready
    assert not stopped_ids.ready
    assert issuing_ids.statistics().renewal_failures == 1
    assert stopped_ids.statistics().renewal_failures == 1


def test_waiting_for_a_free_id_is_logged_once_with_the_id_count() -> None:
    """Kills ``_Keeper._wait_for_a_free_id`` 8 (logged at the second try), 10, 11, 13,
    14, 17-19 (the log line's fields)."""
    ids = IdGenerator(
        IdGenSettings.model_validate(
            {"etcd": "memory://", "timestamp_bits": 48, "machine_bits": 3, "sequence_bits": 12}
        )
    )
    keeper = keeper_of(ids)
    exc = MachineIdsExhausted("all 8 machine IDs under '/ids/' are held")
    with structlog.testing.capture_logs() as logs:
        keeper._wait_for_a_free_id(exc, 0, 0.5)
    assert [(e["event"], e["machine_ids"], e["waiting"]) for e in logs] == [
        ("idgen.exhausted", 8, True)
    ]
    with structlog.testing.capture_logs() as logs:
        keeper._wait_for_a_free_id(exc, 1, 1.0)
    assert logs == []
    with pytest.raises(MachineIdLost, match=r"held: waiting for one to free \(next try in 1\.0s\)"):
        ids.next_id()


async def test_a_claim_on_a_bad_record_is_dropped_and_only_ours() -> None:
    """A claim whose record is unreadable is given back (its key deleted); ``_drop``
    deletes only the claim it made (create revision), not a newer one on that key.
    Kills ``_Keeper._drop`` 1-10, 13-21."""
    etcd = MemoryEtcd()
    keeper = keeper_of(IdGenerator(IdGenSettings.model_validate({"etcd": "memory://"})), etcd)
    lease, _ = await etcd.lease_grant(100)
    await etcd.put(b"/ids/last/7", b"garbage")
    assert await keeper._try_claim(7, lease) is None
    assert await etcd.range(b"/ids/7") == []
    claim = await keeper._try_claim(8, lease)
    assert claim is not None
    await keeper._drop(claim)
    assert await etcd.range(b"/ids/8") == []
    theirs = await keeper._try_claim(8, lease)  # the key made again: a newer claim
    assert theirs is not None
    await keeper._drop(claim)  # the old one
    assert [kv.create_revision for kv in await etcd.range(b"/ids/8")] == [theirs.revision]


async def test_a_drop_that_times_out_names_the_txn(autojump_clock: trio.abc.Clock) -> None:
    """Kills ``_Keeper._drop`` 11, 12 (the request's name in the timeout error)."""
    etcd = MemoryEtcd()
    ids = IdGenerator(
        IdGenSettings.model_validate({"etcd": "memory://"}), backend=etcd, request_timeout=1.0
    )
    keeper = keeper_of(ids, etcd)
    lease, _ = await etcd.lease_grant(100)
    claim = await keeper._try_claim(8, lease)
    assert claim is not None
    etcd.latency = 5.0
    with pytest.raises(IdGenUnavailable, match=r"^etcd txn: no reply within 1s$"):
        await keeper._drop(claim)


async def test_the_lease_is_kept_alive_while_trying_near_ids_for_longer_than_its_ttl(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The scan is stale: its first ten near IDs were taken meanwhile, and with 0.5 s
    per request trying them takes 5 s, past the 3 s lease: it is kept alive every
    second, so the eleventh is claimed under it. Kills ``_Keeper._claim`` 6 (no
    keepalive while trying near IDs)."""
    etcd = MemoryEtcd()
    settings = IdGenSettings.model_validate({"etcd": "memory://", "lease_ttl": 3, "margin": 0.5})
    keeper = keeper_of(IdGenerator(settings, backend=etcd, clock=TrioIdClock(WALL_MS)), etcd)
    other, _ = await etcd.lease_grant(100)
    for machine_id in range(10):
        await etcd.put(f"/ids/{machine_id}".encode(), b'{"owner":"other"}', lease=other)
    lease, _ = await etcd.lease_grant(3)
    etcd.latency = 0.5
    start = trio.current_time()
    claim = await keeper._claim(lease, (list(range(11)), []))
    assert claim.machine_id == 10
    assert trio.current_time() - start > 5
    assert await etcd.lease_keepalive(lease) is not None


# -- the timestamp's end, the issued counter, statistics and repr (_generator.py) -----------


def ending_at(max_ms: int, clock: StepClock, metrics: Metrics | None = None) -> IdGenerator:
    """A static generator whose 40-bit timestamp's last millisecond is ``max_ms``."""
    settings = IdGenSettings(
        epoch_ms=max_ms - (1 << 40) + 1, timestamp_bits=40, machine_bits=11, sequence_bits=12
    )
    ids = IdGenerator(settings, clock=clock, metrics=metrics)
    assert ids.layout.max_timestamp_ms == max_ms
    return ids


def test_the_timestamps_last_millisecond_is_used_then_an_error_says_so() -> None:
    """Kills ``IdGenerator._checkpoint`` 1 (the last millisecond refused), 3-5 (the
    message's wording)."""
    clock = StepClock(0)
    ids = ending_at(WALL_MS, clock)
    assert ids.parse(ids.next_id()).timestamp_ms == WALL_MS
    clock.now += MS
    with pytest.raises(
        IdGenError,
        match=rf"^the 40-bit timestamp ran out at {WALL_MS} \(Unix ms\): choose a later epoch_ms$",
    ):
        ids.next_id()


def issued(metrics: Metrics) -> float:
    value: float = metrics.idgen_issued._value.get()
    return value


def test_the_issued_counter_reaches_prometheus_every_250_ms_and_not_each_ms() -> None:
    """Kills ``IdGenerator._checkpoint`` 11 (a flush at every new millisecond)."""
    clock, metrics = StepClock(0), Metrics()
    ids = IdGenerator(IdGenSettings(), clock=clock, metrics=metrics)
    ids.next_ids(3)
    for _ in range(249):
        clock.now += MS
        ids.next_id()
    assert issued(metrics) == 0
    clock.now += MS  # 250 ms after the first
    ids.next_id()
    assert issued(metrics) == 252


def test_near_the_timestamps_end_the_counter_is_not_flushed_each_ms() -> None:
    """The next checkpoint is the first millisecond past the end (where it fails), not
    one before it. Kills ``IdGenerator._checkpoint`` 12."""
    clock, metrics = StepClock(0), Metrics()
    ids = ending_at(WALL_MS + 2, clock, metrics)
    ids.next_ids(3)
    clock.now += MS
    ids.next_id()
    assert issued(metrics) == 0
    ids.statistics()
    assert issued(metrics) == 4


def test_statistics_give_the_machine_id_and_the_deadline_in_seconds() -> None:
    """Kills ``IdGenerator.statistics`` 5 (the machine ID lost), 31, 32 (``valid_for``
    not in seconds), 33 (a static ID's ``valid_until`` finite), 36 (``valid_until``
    not in seconds)."""
    stats = leased(StepClock(0), 3_000_000_000).statistics()
    assert (stats.machine_id, stats.valid_for, stats.valid_until) == (5, 3.0, 3.0)
    stats = IdGenerator(IdGenSettings(machine_id=7)).statistics()
    assert (stats.machine_id, stats.valid_for, stats.valid_until) == (7, math.inf, math.inf)


def test_repr_says_static_or_leased() -> None:
    """Kills ``IdGenerator.__repr__`` 2, 4-6."""
    assert re.match(
        r"^<IdGenerator static machine_id=7 owner='", repr(IdGenerator(IdGenSettings(machine_id=7)))
    )
    assert re.match(
        r"^<IdGenerator leased machine_id=5 owner='", repr(leased(StepClock(0), 1 << 62))
    )


# -- renewals (_keeper.py, run of the untested rest) ---------------------------------------


async def test_a_renewal_without_a_claim_or_a_lease_says_no_machine_id_is_claimed() -> None:
    """``renew`` with no claim, or no lease, raises ``MachineIdLost`` saying so (not
    an ``AttributeError`` on the missing claim). Kills ``_Keeper.renew`` 2, 5-8."""
    keeper = keeper_of(IdGenerator(IdGenSettings.model_validate({"etcd": "memory://"})))
    keeper.lease, keeper.claim = 1, None
    with pytest.raises(MachineIdLost, match=r"^no machine ID claimed$"):
        await keeper.renew()
    keeper.lease, keeper.claim = None, _Claim(machine_id=3, revision=1, floor_ms=0)
    with pytest.raises(MachineIdLost, match=r"^no machine ID claimed$"):
        await keeper.renew()


async def test_a_renewal_of_a_revoked_lease_names_the_lease_and_the_machine_id(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Kills ``_Keeper.renew`` 13 (the message of a lease etcd no longer has)."""
    etcd = MemoryEtcd()
    ids = IdGenerator(
        IdGenSettings.model_validate({"etcd": "memory://"}),
        backend=etcd,
        clock=TrioIdClock(WALL_MS),
    )
    keeper = keeper_of(ids, etcd)
    await keeper.acquire(first=True)
    assert keeper.claim is not None
    assert keeper.lease is not None
    lease, machine_id = keeper.lease, keeper.claim.machine_id
    await etcd.lease_revoke(lease)
    with pytest.raises(MachineIdLost) as caught:
        await keeper.renew()
    assert str(caught.value) == (f"etcd no longer has lease {lease} (machine ID {machine_id})")


async def test_a_renewal_does_not_install_the_machine_id_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Only the first renewal of a claim installs its machine ID: a later one lets
    the current millisecond go on (the next ID is the next sequence number, not the
    first of a new millisecond). Kills ``_Keeper.renew`` 23, 24."""
    etcd = MemoryEtcd()
    ids = IdGenerator(
        IdGenSettings.model_validate({"etcd": "memory://"}),
        backend=etcd,
        clock=TrioIdClock(WALL_MS),
    )
    keeper = keeper_of(ids, etcd)
    await keeper.acquire(first=True)
    first = ids.next_id()
    await keeper.renew()
    assert ids.next_id() == first + 1


def test_the_floor_is_the_millisecond_after_the_last_one_used() -> None:
    """Under an ID never used, or last used by us, the floor is our own last millisecond
    + 1; after another owner's final record, the millisecond after the later of its last
    one and ours: not a millisecond later still. Kills ``_Keeper._floor`` 5, 12."""
    ids = IdGenerator(IdGenSettings.model_validate({"etcd": "memory://"}))
    keeper = keeper_of(ids)
    ids._ms = 1000
    assert keeper._floor(None) == 1001
    assert keeper._floor(_Record("me", 5000, 1000, False)) == 1001
    assert keeper._floor(_Record("other", 5000, 1000, True)) == 5001
    assert keeper._floor(_Record("other", 500, 1000, True)) == 1001
    assert keeper._floor(_Record("other", 5000, 1000, False)) == 6001


async def test_a_renewal_extends_the_deadline_to_the_exact_nanosecond(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The deadline is the keepalive's send time + (TTL - margin) in nanoseconds,
    exactly. Kills ``_Keeper.renew`` 34 (a nanosecond more per second)."""
    etcd = MemoryEtcd()
    settings = IdGenSettings.model_validate({"etcd": "memory://", "lease_ttl": 9, "margin": 1})
    ids = IdGenerator(settings, backend=etcd, clock=TrioIdClock(WALL_MS))
    keeper = keeper_of(ids, etcd)
    await keeper.acquire(first=True)
    await keeper.renew()
    assert ids._valid_until_ns == keeper.sent_ns + 8_000_000_000


async def test_a_floor_one_ms_ahead_is_waited_for_and_logged_one_at_now_is_not(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The keeper waits for a floor even 1 ms ahead of the clock (logging the machine
    ID and the wait), and neither waits nor logs for a floor at the clock's millisecond.
    Kills ``_Keeper._wait_for_floor`` 3, 4 (the bound) and 5-7, 9 (the log line)."""
    etcd = MemoryEtcd()
    ids = IdGenerator(
        IdGenSettings.model_validate({"etcd": "memory://"}),
        backend=etcd,
        clock=TrioIdClock(WALL_MS),
    )
    keeper = keeper_of(ids, etcd)
    lease, _ = await etcd.lease_grant(100)
    now = ids._now_ms()
    with structlog.testing.capture_logs() as logs:
        await keeper._wait_for_floor(_Claim(machine_id=4, revision=1, floor_ms=now), lease)
    assert [e for e in logs if e["event"] == "idgen.waiting_for_clock"] == []
    assert ids._now_ms() == now
    with structlog.testing.capture_logs() as logs:
        await keeper._wait_for_floor(_Claim(machine_id=4, revision=1, floor_ms=now + 1), lease)
    waits = [e for e in logs if e["event"] in ("idgen.waiting_for_clock", None)]
    assert [(e["event"], e.get("machine_id"), e.get("wait_ms")) for e in waits] == [
        ("idgen.waiting_for_clock", 4, 1)
    ]
    assert ids._now_ms() >= now + 1
