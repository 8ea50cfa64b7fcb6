"""Regression tests for what the model-based test (test_model.py) found."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from supervisors import (
    ChildSpec,
    ChildStartFailed,
    ChildState,
    Supervisor,
    SupervisorNotRunning,
)

from ._helpers import Boom, Recorder
from .test_races import stubborn


def slow_start(seconds: float, *, ok: bool) -> Callable[..., Awaitable[None]]:
    """A child that gets ready (``ok``) or raises after ``seconds``."""

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep(seconds)
        if not ok:
            raise Boom("cannot start")
        task_status.started()
        await trio.sleep_forever()

    return child


@pytest.mark.parametrize("ok", [False, True])
async def test_a_start_child_that_ends_while_the_supervisor_stops_is_reported_once(
    autojump_clock: trio.testing.MockClock, ok: bool
) -> None:
    # The supervisor stops "late" first (it overstays for 1 s); meanwhile "slow", whose
    # start_child is still pending, fails (or gets ready) on its own. Its ChildStartFailed
    # was published twice (by the stop and by start_child), and a start that got ready
    # during the shutdown returned normally although shutdown wins.
    rec = Recorder()
    sup = Supervisor(on_event=rec)
    outcome: list[BaseException | None] = []

    async def start_slow() -> None:
        try:
            await sup.start_child(ChildSpec("slow", slow_start(0.5, ok=ok), start_timeout=5.0))
            outcome.append(None)
        except Exception as exc:
            outcome.append(exc)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            nursery.start_soon(start_slow)
            await trio.testing.wait_all_tasks_blocked()
            await sup.start_child(ChildSpec("late", stubborn, shutdown=1.0))
            report = await sup.shutdown()
    assert report.duration <= 1.0 + 5.0
    assert len(rec.of(ChildStartFailed)) == (0 if ok else 1)
    assert len(outcome) == 1
    assert isinstance(outcome[0], SupervisorNotRunning)
    assert all(i.state is ChildState.TERMINATED for i in sup.which_children())


@pytest.mark.parametrize("ok", [False, True])
async def test_a_restart_child_that_ends_while_the_supervisor_stops_is_reported_once(
    autojump_clock: trio.testing.MockClock, ok: bool
) -> None:
    # The same race through restart_child: "slow" restarts (its start takes 0.5 s)
    # while the shutdown holds on "late" for its 1 s budget.
    rec = Recorder()
    plan: list[Callable[..., Awaitable[None]]] = [slow_start(0.0, ok=True)]

    async def slow(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await plan[0](task_status=task_status)

    sup = Supervisor(on_event=rec)
    outcome: list[BaseException | None] = []

    async def restart_slow() -> None:
        try:
            await sup.restart_child("slow")
            outcome.append(None)
        except Exception as exc:
            outcome.append(exc)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await sup.start_child(ChildSpec("slow", slow, start_timeout=5.0))
            await sup.start_child(ChildSpec("late", stubborn, shutdown=1.0))
            plan[0] = slow_start(0.5, ok=ok)
            nursery.start_soon(restart_slow)
            await trio.testing.wait_all_tasks_blocked()
            await sup.shutdown()
    assert len(rec.of(ChildStartFailed)) == (0 if ok else 1)
    assert len(outcome) == 1
    assert isinstance(outcome[0], SupervisorNotRunning)
    states = {i.id: i.state for i in sup.which_children()}
    assert states == {
        "slow": ChildState.TERMINATED if ok else ChildState.FAILED,
        "late": ChildState.TERMINATED,
    }
