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

from gochat_actors import ClockBehind
from gochat_actors.idgen import IdGenerator, IdGenSettings

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
