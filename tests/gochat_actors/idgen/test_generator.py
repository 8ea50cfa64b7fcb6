"""The generator itself (static machine ID): ordering, batches, the next-ms wait,
clock steps, metrics, bad input."""

from __future__ import annotations

import math
import time

import pytest
import trio

from gochat_actors import ClockBehind, Dsn, IdGenError, MachineIdLost
from gochat_actors.idgen import IdGenerator, IdGenSettings, SystemClock, TrioIdClock
from gochat_actors.metrics import Metrics
from supervisors import open_supervisor

WALL_MS = 1_700_000_000_000


class StepClock:
    """Monotonic time that moves ``step_ns`` per read; a wall clock you can set."""

    def __init__(self, step_ns: int, wall_ms: int = WALL_MS) -> None:
        self.now = 0
        self.step_ns = step_ns
        self.wall = wall_ms * 1_000_000

    def monotonic_ns(self) -> int:
        self.now += self.step_ns
        return self.now

    def wall_ns(self) -> int:
        return self.wall


def test_static_ids_strictly_increase_and_parse_back() -> None:
    ids = IdGenerator(IdGenSettings(machine_id=7))
    got = [ids.next_id() for _ in range(20_000)]
    assert got == sorted(set(got))
    assert {ids.parse(i).machine_id for i in got} == {7}
    assert ids.machine_id == 7
    assert ids.static
    assert ids.ready
    assert ids.statistics().valid_for == math.inf


def test_next_ids_is_increasing_and_continues_after_next_id() -> None:
    ids = IdGenerator(IdGenSettings())
    before = ids.next_id()
    batch = ids.next_ids(10_000)
    after = ids.next_id()
    assert len(batch) == 10_000
    assert [before, *batch, after] == sorted({before, *batch, after})
    assert ids.next_ids(0) == []
    assert ids.statistics().issued == 10_002


def test_sequence_overflow_waits_for_the_next_millisecond() -> None:
    # 100 ns per clock read: 10,000 calls per ms, far over the 4,096 a ms can hold.
    metrics = Metrics()
    ids = IdGenerator(IdGenSettings(), clock=StepClock(100), metrics=metrics)
    got = [ids.next_id() for _ in range(30_000)]
    got += ids.next_ids(30_000)
    assert got == sorted(set(got))
    per_ms: dict[int, int] = {}
    for i in got:
        parts = ids.parse(i)
        per_ms[parts.timestamp_ms] = per_ms.get(parts.timestamp_ms, 0) + 1
    assert max(per_ms.values()) == 4096
    stats = ids.statistics()
    assert stats.next_ms_waits >= 30_000 // 4096
    assert stats.issued == 60_000
    assert metrics.idgen_next_millisecond_waits._value.get() == stats.next_ms_waits
    assert metrics.idgen_issued._value.get() == 60_000
    assert metrics.idgen_machine_id._value.get() == 1


def test_a_wall_clock_step_inside_the_process_changes_nothing() -> None:
    clock = StepClock(1_000)
    ids = IdGenerator(IdGenSettings(), clock=clock)
    first = [ids.next_id() for _ in range(1000)]
    clock.wall -= 3_600 * 10**9  # an hour back: read once, so ignored
    middle = [ids.next_id() for _ in range(1000)]
    clock.wall += 7_200 * 10**9  # two hours forward
    last = [ids.next_id() for _ in range(1000)]
    got = first + middle + last
    assert got == sorted(set(got))
    # timestamps follow monotonic time only: 3,000 reads of 1 us = 3 ms
    span = ids.parse(got[-1]).timestamp_ms - ids.parse(got[0]).timestamp_ms
    assert span <= 4


def test_time_is_the_wall_clock_read_once_plus_monotonic_time() -> None:
    ids = IdGenerator(IdGenSettings(), clock=StepClock(1_000_000, wall_ms=WALL_MS))
    assert ids.parse(ids.next_id()).timestamp_ms == WALL_MS + 1  # one read later
    assert ids.parse(ids.next_id()).timestamp_ms == WALL_MS + 2


def test_a_clock_before_the_epoch_is_refused() -> None:
    with pytest.raises(ClockBehind, match="before epoch_ms"):
        IdGenerator(IdGenSettings(epoch_ms=WALL_MS + 1), clock=StepClock(1))


def test_the_timestamp_running_out_is_an_error_not_a_wrap() -> None:
    settings = IdGenSettings(timestamp_bits=2, machine_bits=49, sequence_bits=12, epoch_ms=WALL_MS)
    ids = IdGenerator(settings, clock=StepClock(1_000_000, wall_ms=WALL_MS))
    got = [ids.next_id() for _ in range(3)]  # ms 1, 2, 3 (2 bits: 0..3)
    assert got == sorted(got)
    with pytest.raises(IdGenError, match="timestamp ran out"):
        ids.next_id()


def test_bad_arguments_are_named() -> None:
    ids = IdGenerator(IdGenSettings())
    with pytest.raises(ValueError, match="n must be >= 0"):
        ids.next_ids(-1)
    with pytest.raises(TypeError, match="n must be an int"):
        ids.next_ids(2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="settings must be an IdGenSettings"):
        IdGenerator({"machine_id": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="request_timeout"):
        IdGenerator(IdGenSettings(), request_timeout=0)


def test_a_leased_generator_issues_nothing_before_its_child_runs() -> None:
    ids = IdGenerator(IdGenSettings(etcd=Dsn("memory://")))
    assert not ids.static
    assert ids.machine_id is None
    with pytest.raises(MachineIdLost, match="no machine ID held yet"):
        ids.next_id()
    with pytest.raises(MachineIdLost):
        ids.next_ids(3)
    assert ids.statistics().valid_for == 0.0
    assert "leased" in repr(ids)


def test_system_clock_is_the_default() -> None:
    ids = IdGenerator(IdGenSettings())
    assert isinstance(ids._clock, SystemClock)
    clock = SystemClock()
    before_mono, before_wall = time.monotonic_ns(), time.time_ns()
    mono, wall = clock.monotonic_ns(), clock.wall_ns()
    assert before_mono <= mono <= time.monotonic_ns()  # it reads time.monotonic_ns ...
    assert before_wall <= wall <= time.time_ns()  # ... and time.time_ns


async def test_static_child_starts_at_once_and_stays_up() -> None:
    metrics = Metrics()
    ids = IdGenerator(IdGenSettings(machine_id=3), metrics=metrics)
    async with open_supervisor([ids.spec()]) as sup:
        await ids.wait_ready()
        assert ids.next_id() > 0
        assert metrics.idgen_machine_id._value.get() == 3
        assert [c.id for c in sup.which_children()] == ["idgen"]
    assert ids.ready  # the static machine ID needs no child


async def test_trio_id_clock_steps_the_wall_clock_only(autojump_clock: trio.abc.Clock) -> None:
    clock = TrioIdClock(wall_ms=WALL_MS)
    mono, wall = clock.monotonic_ns(), clock.wall_ns()
    await trio.sleep(1.5)
    clock.step(-10.0)
    assert clock.monotonic_ns() - mono == 1_500_000_000
    assert clock.wall_ns() - wall == 1_500_000_000 - 10_000_000_000


# -- issue 28 mutant: the deadline checked only before a batch's first chunk -------------
def test_a_batch_stops_at_the_deadline_crossed_inside_it() -> None:
    """Each clock read moves 1.5 ms, so every chunk of a batch is a new millisecond: the
    deadline (5 ms away) passes inside a batch of ten milliseconds' worth. Checked only
    before the first chunk, the batch issued IDs past the deadline."""
    clock = StepClock(1_500_000)
    ids = IdGenerator(IdGenSettings(etcd=Dsn("memory://")), clock=clock)
    ids._install(3, 0)
    deadline_ns = clock.now + 5_000_000
    ids._extend(deadline_ns)
    with pytest.raises(MachineIdLost):
        ids.next_ids(10 * 4096)
    assert clock.now >= deadline_ns
    with pytest.raises(MachineIdLost):
        ids.next_id()


# -- issue 22 point 6: next_ids(n) is bounded ---------------------------------------------
def test_a_batch_is_bounded_by_a_typed_error() -> None:
    """``next_ids(10**18)`` allocated until the kernel killed the process. A batch is at
    most 16 ms worth of sequence (65,536 IDs with the default layout): a synchronous
    call must not block the trio thread for long, nor allocate without bound."""
    ids = IdGenerator(IdGenSettings())
    assert len(ids.next_ids(65_536)) == 65_536
    for n in (65_537, 10**18):
        with pytest.raises(ValueError, match=r"n must be <= 65536 \(max_batch\)"):
            ids.next_ids(n)
    assert ids.max_batch == 65_536
    small = IdGenerator(
        IdGenSettings(timestamp_bits=41, machine_bits=20, sequence_bits=2, machine_id=1)
    )
    assert small.max_batch == 16 * 4  # 16 ms of a 4-ID millisecond
