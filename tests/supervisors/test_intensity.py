"""Restart intensity (sliding window), backoff timing, escalation through nested trees."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from supervisors import (
    Backoff,
    ChildRestarting,
    ChildSpec,
    ChildStarted,
    Escalating,
    RestartIntensityExceeded,
    Supervisor,
    open_supervisor,
    supervisor_spec,
)

from ._helpers import Boom, Recorder, until


def crasher(period: float, log: list[float]) -> ChildSpec:
    async def crash(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        log.append(trio.current_time())
        task_status.started()
        await trio.sleep(period)
        raise Boom("periodic")

    return ChildSpec("c", crash)


async def test_exceeding_the_window_escalates_with_the_cause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    with pytest.raises(RestartIntensityExceeded) as info:
        async with open_supervisor(
            [crasher(1.0, starts)], max_restarts=3, max_seconds=5.0, backoff=None
        ):
            await trio.sleep_forever()
    # 3 restarts are allowed within 5 s; the 4th failure (at t0+4) is one too many.
    assert len(starts) == 4
    assert isinstance(info.value.__cause__, Boom)
    assert "more than 3 restart(s) within 5s" in str(info.value)
    assert info.value.child == "c"


async def test_failures_spread_wider_than_the_window_never_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    # One failure every 3 s with max 2 in 5 s: the window never holds 3.
    with trio.move_on_after(60):
        async with open_supervisor(
            [crasher(3.0, starts)], max_restarts=2, max_seconds=5.0, backoff=None
        ):
            await trio.sleep_forever()
    assert len(starts) == 20


async def test_window_edge_is_inclusive(autojump_clock: trio.testing.MockClock) -> None:
    # Failures exactly max_seconds apart: the oldest is still inside the window (OTP's rule).
    starts: list[float] = []
    with pytest.raises(RestartIntensityExceeded):
        async with open_supervisor(
            [crasher(2.5, starts)], max_restarts=2, max_seconds=5.0, backoff=None
        ):
            await trio.sleep_forever()
    assert len(starts) == 3


async def test_zero_restarts_escalates_on_first_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    with pytest.raises(RestartIntensityExceeded):
        async with open_supervisor([crasher(1.0, starts)], max_restarts=0, backoff=None):
            await trio.sleep_forever()
    assert len(starts) == 1


async def test_backoff_delays_follow_the_sequence(autojump_clock: trio.testing.MockClock) -> None:
    starts: list[float] = []
    rec = Recorder()
    backoff = Backoff(initial=1.0, maximum=4.0, multiplier=2.0, jitter=0.0, reset_after=100)
    with trio.move_on_after(30):
        async with open_supervisor(
            [crasher(0.0, starts)], max_restarts=100, max_seconds=1, backoff=backoff, on_event=rec
        ):
            await trio.sleep_forever()
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(starts)]
    assert gaps[:5] == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert [e.delay for e in rec.of(ChildRestarting)][:4] == [1.0, 2.0, 4.0, 4.0]


async def test_backoff_resets_after_a_healthy_run(autojump_clock: trio.testing.MockClock) -> None:
    starts: list[float] = []
    runs = iter([0.0, 0.0, 0.0, 10.0, 0.0, 0.0])

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        starts.append(trio.current_time())
        task_status.started()
        await trio.sleep(next(runs, 1000.0))
        raise Boom("x")

    backoff = Backoff(initial=1.0, maximum=100.0, multiplier=2.0, jitter=0.0, reset_after=5.0)
    with trio.move_on_after(40):
        async with open_supervisor(
            [ChildSpec("c", child)], max_restarts=100, max_seconds=1, backoff=backoff
        ):
            await trio.sleep_forever()
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(starts)]
    # 1, 2, 4 (failing fast), then a 10 s healthy run (gap = 10 + reset delay 1), then 2.
    assert gaps[:5] == [1.0, 2.0, 4.0, 11.0, 2.0]


async def test_seeded_jitter_is_reproducible(autojump_clock: trio.testing.MockClock) -> None:
    async def run_once(seed: int) -> list[float]:
        rec = Recorder()
        backoff = Backoff(initial=1.0, maximum=8.0, jitter=0.5)
        with trio.move_on_after(20):
            async with open_supervisor(
                [crasher(0.0, [])],
                max_restarts=100,
                max_seconds=1,
                backoff=backoff,
                seed=seed,
                on_event=rec,
            ):
                await trio.sleep_forever()
        return [e.delay for e in rec.of(ChildRestarting)]

    first = await run_once(1)
    assert first == await run_once(1)
    assert first != await run_once(2)
    assert all(0.5 <= d <= 8.0 for d in first)


async def test_escalation_three_levels_deep(autojump_clock: trio.testing.MockClock) -> None:
    starts: list[float] = []
    leaf = crasher(1.0, starts)
    rec = Recorder()
    level3 = supervisor_spec("l3", [leaf], max_restarts=1, max_seconds=10, backoff=None)
    level2 = supervisor_spec("l2", [level3], max_restarts=1, max_seconds=100, backoff=None)
    root = Supervisor([level2], max_restarts=1, max_seconds=1000, backoff=None)
    root.subscribe(rec)
    with pytest.raises(RestartIntensityExceeded) as info:
        await root.run()
    escalations = [(e.supervisor, e.child) for e in rec.of(Escalating)]
    # l3 gives up after 2 leaf failures; each level allows one restart of the level below.
    assert escalations[-1] == ("", "l2")
    assert ("l2", "l3") in escalations
    assert ("l2/l3", "c") in escalations
    # One exception at the top, its cause is the level below, down to the real failure.
    err: BaseException | None = info.value
    chain = []
    while err is not None:
        chain.append(type(err).__name__)
        err = err.__cause__
    assert chain == ["RestartIntensityExceeded"] * 3 + ["Boom"]
    assert len(starts) == 8  # 2 per l3 incarnation, 2 l3 per l2, 2 l2 at the root
    assert {e.path for e in rec.of(ChildStarted)} == {"l2", "l2/l3", "l2/l3/c"}


async def test_the_failure_that_escalates_says_it_will_not_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from supervisors import ChildExited

    rec = Recorder()
    with pytest.raises(RestartIntensityExceeded):
        async with open_supervisor([crasher(1.0, [])], max_restarts=1, backoff=None, on_event=rec):
            await trio.sleep_forever()
    crashes = [e.will_restart for e in rec.of(ChildExited) if e.exception is not None]
    assert crashes == [True, False]


def test_the_default_backoff_is_not_zero() -> None:
    assert Supervisor().backoff == Backoff()
    assert Backoff().initial > 0
    assert Supervisor(backoff=None).backoff is None


async def test_a_crash_is_restarted_after_the_default_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs: list[float] = []

    async def crasher(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        runs.append(trio.current_time())
        task_status.started()
        if len(runs) == 1:
            raise Boom("once")
        await trio.sleep_forever()

    rec = Recorder()
    async with open_supervisor([ChildSpec("c", crasher)], on_event=rec) as sup:
        await until(sup, lambda: len(runs) == 2)
    low, high = Backoff().bounds(0)
    assert 0 < low <= runs[1] - runs[0] <= high
    assert rec.of(ChildRestarting)[0].delay == pytest.approx(runs[1] - runs[0])
