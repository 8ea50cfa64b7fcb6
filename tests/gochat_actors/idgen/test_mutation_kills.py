"""Tests written for the survivors of the mutation run of ``gochat_actors/idgen``
(``make mutants MODULE=gochat_actors/idgen``; see docs/testing.md, "Mutation runs", and
docs/mutants.md). Each test names the mutants it kills (``_generator.py``); each was
seen failing with its mutants and passing without, with
``scripts/mutants.py gochat_actors/idgen --tests ... --check "" MUTANT...``.

The clock is a :class:`StepClock` (monotonic time moving a fixed step per read): no
sleeps, no timing bounds.
"""

from __future__ import annotations

import pytest

from gochat_actors import ClockBehind, MachineIdLost
from gochat_actors.idgen import IdGenerator, IdGenSettings, _generator

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
