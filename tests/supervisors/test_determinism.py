"""The same seed gives the same outcome: simultaneous exits are handled in a canonical
order, ``seed=`` reaches nested supervisors, and the trace digest tells runs apart."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from supervisors import (
    Backoff,
    ChildExited,
    ChildRestarting,
    ChildSpec,
    ChildStarted,
    ChildStartFailed,
    ExitReason,
    Health,
    HealthChanged,
    RestartIntensityExceeded,
    SupervisorStopped,
    open_supervisor,
    supervisor_spec,
)
from supervisors.testing import EventTrace

from ._helpers import Boom, Recorder


def fails_at(name: str, at: float) -> ChildSpec:
    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_until(at)
        raise Boom(f"{name} failed")

    return ChildSpec(name, child)


async def test_simultaneous_failures_are_handled_in_start_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 25: which of two children failing at the same instant escalated was up to trio's
    # scheduler (a coin toss per run); now exits of one instant go in start order.
    for _ in range(12):
        at = trio.current_time() + 1.0
        with pytest.raises(RestartIntensityExceeded) as info:
            async with open_supervisor(
                [fails_at("a", at), fails_at("b", at)], max_restarts=1, backoff=None
            ):
                await trio.sleep_forever()
        assert info.value.child == "b"


async def test_the_roots_seed_reaches_nested_supervisors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 25: a nested supervisor's jitter used random.random() whatever the root's seed.
    async def delays(seed: int) -> list[float]:
        rec = Recorder()
        runs = 0

        async def crasher(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            nonlocal runs
            runs += 1
            task_status.started()
            raise Boom("again")

        inner = supervisor_spec(
            "inner",
            [ChildSpec("c", crasher)],
            max_restarts=100,
            max_seconds=1,
            backoff=Backoff(initial=1.0, maximum=8.0, jitter=0.5),
        )
        with trio.move_on_after(20):
            async with open_supervisor([inner], seed=seed, on_event=rec):
                await trio.sleep_forever()
        return [e.delay for e in rec.of(ChildRestarting) if e.supervisor == "inner"]

    first = await delays(1)
    assert len(first) > 3
    assert first == await delays(1)
    assert first != await delays(2)


def digest(*events: object) -> str:
    trace = EventTrace()
    for event in events:
        trace(event)  # type: ignore[arg-type]
    return trace.digest()


def test_the_digest_tells_apart_what_distinguishes_runs() -> None:
    # Bug 25: runs that differed in these gave the same digest.
    def health(status: Health) -> HealthChanged:
        return HealthChanged(supervisor="", time=0.0, child="c", status=status, reason="")

    def start_failed(exc: BaseException) -> ChildStartFailed:
        return ChildStartFailed(supervisor="", time=0.0, child="c", exception=exc)

    def stopped(reason: str) -> SupervisorStopped:
        return SupervisorStopped(supervisor="", time=0.0, reason=reason)

    def started(incarnation: int) -> ChildStarted:
        return ChildStarted(supervisor="", time=0.0, child="c", incarnation=incarnation)

    def exited(incarnation: int) -> ChildExited:
        return ChildExited(
            supervisor="",
            time=0.0,
            child="c",
            reason=ExitReason.EXCEPTION,
            exception=Boom(),
            incarnation=incarnation,
            will_restart=True,
        )

    pairs = [
        (health(Health.DEGRADED), health(Health.FAILED)),
        (start_failed(ValueError()), start_failed(KeyError())),
        (stopped("shutdown"), stopped("escalated")),
        (started(1), started(2)),
        (exited(1), exited(2)),
    ]
    for one, other in pairs:
        assert digest(one) != digest(other), (one, other)
        assert digest(one) == digest(one)
