"""Races between crashes, manual operations, starts and shutdown (issue 26's review)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import supervisors
from supervisors import (
    ChildExited,
    ChildOverstayed,
    ChildSpec,
    ChildStarted,
    ChildState,
    Escalating,
    ExitReason,
    Strategy,
    Supervisor,
    SupervisorError,
    SupervisorNotRunning,
    open_supervisor,
    supervisor_spec,
)
from supervisors.testing import kill

from ._helpers import Boom, Controlled, Recorder, until


def state(sup: Supervisor, child_id: str) -> ChildState | None:
    return next((i.state for i in sup.which_children() if i.id == child_id), None)


async def stubborn(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Ready at once; when stopped, shields itself for 3 s (overstaying a 1 s budget)."""
    task_status.started()
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.sleep(3)


def slow_cleanup(seconds: float, counter: list[int] | None = None) -> Any:
    """A child ready at once whose cleanup (bounded by its budget) takes ``seconds``;
    it appends to ``counter`` at each start."""

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if counter is not None:
            counter.append(1)
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with supervisors.cleanup_scope():
                await trio.sleep(seconds)

    return child


class SlowRestart:
    """Ready at once the first time; every later start waits for ``gate`` first."""

    def __init__(self) -> None:
        self.starts = 0
        self.gate = trio.Event()
        self.crash = trio.Event()

    async def open_gate_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self.gate.set()

    async def __call__(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.starts += 1
        if self.starts > 1:
            await self.gate.wait()
        task_status.started()
        if self.starts == 1:
            await self.crash.wait()
            raise Boom("first run crashed")
        await trio.sleep_forever()


async def messy(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A child whose own nursery fails while it is being cancelled."""

    async def helper() -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise Boom("cleanup failed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(helper)
        task_status.started()
        await trio.sleep_forever()


async def test_a_child_whose_nursery_fails_while_it_stops_does_not_crash_the_tree(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 1: BaseExceptionGroup([Boom, Cancelled]) escaped the child and its supervisor.
    rec = Recorder()
    async with open_supervisor([ChildSpec("messy", messy)], on_event=rec) as sup:
        await sup.terminate_child("messy")
        assert state(sup, "messy") is ChildState.TERMINATED
        await sup.restart_child("messy")
        assert kill(sup, "messy", ConnectionError("chaos"))
        await until(sup, lambda: len(rec.of(ChildStarted)) == 3)  # the restart after the kill
    exits = rec.of(ChildExited)
    assert [e.reason for e in exits] == [
        ExitReason.SHUTDOWN,
        ExitReason.KILLED,
        ExitReason.SHUTDOWN,
    ]
    assert isinstance(exits[0].exception, ExceptionGroup)
    assert exits[0].exception.subgroup(Boom) is not None
    assert isinstance(exits[1].exception, ConnectionError)
    assert exits[1].will_restart


async def test_shutdown_and_terminate_do_not_wait_for_a_restart_that_never_gets_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 2: a restart waiting for readiness held the lock: shutdown() hung forever.
    for stop in ("shutdown", "terminate"):
        child = SlowRestart()
        spec = ChildSpec("slow", child, start_timeout=None, shutdown=2.0)
        sup = Supervisor([spec], backoff=None)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            child.crash.set()
            await until(sup, lambda: child.starts == 2)  # noqa: B023
            t0 = trio.current_time()
            with trio.fail_after(10):
                if stop == "shutdown":
                    report = await sup.shutdown()
                    assert report.clean
                else:
                    await sup.terminate_child("slow")
                    assert state(sup, "slow") is ChildState.TERMINATED
                    sup.shutdown_nowait()
            assert trio.current_time() - t0 <= 2.0


async def test_terminate_child_wins_over_a_crash_still_queued(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 3: terminate_child returned early for a dead incarnation whose exit was queued,
    # and the queued exit then restarted the child it had just terminated.
    slow = SlowRestart()
    ctl = Controlled()
    children = [ChildSpec("slow", slow, start_timeout=None), ChildSpec("a", ctl, args=("a",))]
    async with open_supervisor(children, backoff=None) as sup:
        slow.crash.set()
        await until(sup, lambda: slow.starts == 2)  # its restart now waits for the gate
        ctl.crash("a")
        await until(sup, lambda: (h := sup.child_handle("a")) is not None and h.finished)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow.open_gate_after, 1)
            await sup.terminate_child("a")
            starts = ctl.starts["a"]
        await until(sup, lambda: state(sup, "slow") is ChildState.RUNNING)
        await trio.testing.wait_all_tasks_blocked()
        assert state(sup, "a") is ChildState.TERMINATED
        assert ctl.starts["a"] == starts


async def test_a_dependent_restarts_after_its_dependency_overstayed_its_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 9: the dependent was dropped as blocked and nothing re-queued it.
    ctl = Controlled()
    children = [
        ChildSpec("dep", stubborn, shutdown=1.0),
        ChildSpec("app", ctl, args=("app",), depends_on=("dep",)),
        ChildSpec("x", ctl, args=("x",)),
    ]
    async with open_supervisor(children, strategy=Strategy.ONE_FOR_ALL, backoff=None) as sup:
        ctl.crash("x")
        await until(
            sup,
            lambda: (
                ctl.starts["app"] == 2
                and all(i.state is ChildState.RUNNING for i in sup.which_children())
            ),
            timeout=30,
        )


async def test_restart_child_racing_shutdown_neither_hangs_nor_leaks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 10: shutdown hung with a leaked incarnation, or restart_child raised a raw
    # RuntimeError('Nursery is closed to new arrivals').
    starts: list[int] = []
    sup = Supervisor([ChildSpec("c", slow_cleanup(1.0, starts), shutdown=5.0)])
    errors: list[BaseException] = []

    async def restart() -> None:
        try:
            await sup.restart_child("c")
        except SupervisorNotRunning as exc:
            errors.append(exc)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            nursery.start_soon(restart)
            await until(sup, lambda: state(sup, "c") is ChildState.STOPPING)
            sup.shutdown_nowait()
    assert len(starts) == 1
    assert len(errors) == 1
    assert state(sup, "c") is ChildState.TERMINATED


async def test_an_overstay_is_reported_once(autojump_clock: trio.testing.MockClock) -> None:
    # Bug 13: the shutdown stopped again a victim that had overstayed during a restart.
    rec = Recorder()
    ctl = Controlled()
    children = [ChildSpec("stubborn", stubborn, shutdown=1.0), ChildSpec("x", ctl, args=("x",))]
    async with open_supervisor(
        children, strategy=Strategy.ONE_FOR_ALL, backoff=None, on_event=rec
    ) as sup:
        ctl.crash("x")
        await until(sup, lambda: bool(rec.of(ChildOverstayed)))
    assert [e.child for e in rec.of(ChildOverstayed)] == ["stubborn"]
    report = sup.shutdown_report
    assert report is not None
    assert [o.path for o in report.overstayed] == ["stubborn"]


def crash_once(name: str, at: float = 1.0) -> ChildSpec:
    """A child whose first incarnation raises ``at`` seconds after it is ready."""
    runs = 0

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs == 1:
            await trio.sleep(at)
            raise Boom(f"{name} crashed")
        await trio.sleep_forever()

    return ChildSpec(name, child)


async def test_simultaneous_crashes_under_one_for_all_count_as_one_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 14: the sibling's queued exit was counted as a second failure (OTP discards it).
    rec = Recorder()
    async with open_supervisor(
        [crash_once("a"), crash_once("b")],
        strategy=Strategy.ONE_FOR_ALL,
        max_restarts=1,
        backoff=None,
        on_event=rec,
    ) as sup:
        await until(
            sup,
            lambda: (
                [(i.restarts, i.state) for i in sup.which_children()]
                == [(1, ChildState.RUNNING)] * 2
            ),
        )
    assert not rec.of(Escalating)
    crashes = [(e.child, e.reason, e.will_restart) for e in rec.of(ChildExited)][:2]
    assert sorted(crashes) == [("a", ExitReason.EXCEPTION, True), ("b", ExitReason.EXCEPTION, True)]


async def test_a_child_can_terminate_itself_at_once(autojump_clock: trio.testing.MockClock) -> None:
    # Bug 15: the child waited for its own end for its whole budget and overstayed.
    go = trio.Event()
    after: list[str] = []

    async def quitter(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await go.wait()
        me = supervisors.current_child()
        await me.supervisor.terminate_child(me.id)
        after.append("still running")

    rec = Recorder()
    async with open_supervisor([ChildSpec("q", quitter, shutdown=5.0)], on_event=rec) as sup:
        t0 = trio.current_time()
        go.set()
        await until(sup, lambda: state(sup, "q") is ChildState.TERMINATED)
        assert trio.current_time() - t0 < 5.0
        await trio.testing.wait_all_tasks_blocked()
        assert state(sup, "q") is ChildState.TERMINATED
    assert after == []
    assert not rec.of(ChildOverstayed)


async def test_a_child_can_restart_itself_at_once(autojump_clock: trio.testing.MockClock) -> None:
    go = trio.Event()
    runs = 0

    async def again(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs == 1:
            await go.wait()
            me = supervisors.current_child()
            await me.supervisor.restart_child(me.id)
        await trio.sleep_forever()

    rec = Recorder()
    async with open_supervisor([ChildSpec("r", again, shutdown=5.0)], on_event=rec) as sup:
        t0 = trio.current_time()
        go.set()
        await until(sup, lambda: runs == 2 and state(sup, "r") is ChildState.RUNNING)
        assert trio.current_time() - t0 < 5.0
        assert sup.which_children()[0].restarts == 1
        assert len(sup._restart_times) == 0  # a manual restart: not counted for intensity
    assert not rec.of(ChildOverstayed)
    assert [(e.reason, e.will_restart) for e in rec.of(ChildExited)] == [
        (ExitReason.SHUTDOWN, False),
        (ExitReason.SHUTDOWN, False),
    ]


async def test_a_grandchild_not_yet_ready_may_not_call_the_root(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 15: during the root's restart of "g", its grandchild (not yet ready) called
    # the root's restart_child and deadlocked: the check looked at one level only.
    ctl = Controlled()
    refused: list[BaseException] = []
    runs = 0

    async def grandchild(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            inner = supervisors.current_child().supervisor
            assert inner.parent is not None
            try:
                await inner.parent.supervisor.restart_child("x")
            except RuntimeError as exc:
                refused.append(exc)
        task_status.started()
        await trio.sleep_forever()

    children = [
        ChildSpec("x", ctl, args=("x",)),
        supervisor_spec("g", [ChildSpec("gc", grandchild)]),
    ]
    async with open_supervisor(
        children, strategy=Strategy.ONE_FOR_ALL, backoff=None, max_restarts=10
    ) as sup:
        ctl.crash("x")
        await until(
            sup,
            lambda: runs == 2 and all(i.state is ChildState.RUNNING for i in sup.which_children()),
            timeout=30,
        )
    assert len(refused) == 1
    assert "would wait for itself" in str(refused[0])


async def test_a_child_that_dies_while_its_supervisor_stops_is_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 21: its exit was queued and never processed, so no ChildExited.
    ctl = Controlled()
    rec = Recorder()
    children = [ChildSpec("a", ctl, args=("a",)), ChildSpec("b", slow_cleanup(1.0))]
    sup = Supervisor(children, on_event=rec)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        sup.shutdown_nowait()
        await until(sup, lambda: state(sup, "b") is ChildState.STOPPING)
        ctl.crash("a")  # dies on its own while b is still stopping
        await sup.shutdown()
    exits = {e.child: e for e in rec.of(ChildExited)}
    assert exits["a"].reason is ExitReason.EXCEPTION
    assert isinstance(exits["a"].exception, Boom)
    assert exits["a"].will_restart is False
    assert state(sup, "a") is ChildState.TERMINATED


async def test_a_slow_start_does_not_delay_an_unrelated_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Design weakness: every start held one lock while waiting for readiness, so a crash
    # at t=1 was restarted only when an unrelated slow start ended at t=5.
    slow = SlowRestart()
    ctl = Controlled()
    children = [ChildSpec("slow", slow, start_timeout=None), ChildSpec("a", ctl, args=("a",))]
    async with open_supervisor(children, backoff=None) as sup:
        slow.crash.set()
        await until(sup, lambda: slow.starts == 2)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow.open_gate_after, 5)
            await trio.sleep(1)
            ctl.crash("a")
            await until(sup, lambda: ctl.starts["a"] == 2)
            assert trio.current_time() - t0 == pytest.approx(1.0)
            assert state(sup, "slow") is ChildState.STARTING


class GatedStart:
    """A child whose every start waits for ``gate`` (re-armed by ``arm()``)."""

    def __init__(self) -> None:
        self.starts = 0
        self.gate = trio.Event()

    def arm(self) -> None:
        self.gate = trio.Event()

    async def __call__(
        self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.starts += 1
        await self.gate.wait()
        task_status.started(self.starts)
        await trio.sleep_forever()


@pytest.mark.parametrize("operation", ["start_child", "restart_child"])
async def test_a_start_a_caller_waits_for_is_left_alone_by_a_siblings_failure(
    operation: str, autojump_clock: trio.testing.MockClock
) -> None:
    ctl = Controlled()
    gated = GatedStart()
    gated.gate.set()
    children = [ChildSpec("a", ctl, args=("a",))]
    if operation == "restart_child":
        children.append(ChildSpec("g", gated))
    async with open_supervisor(children, strategy=Strategy.ONE_FOR_ALL, backoff=None) as sup:
        gated.arm()
        async with trio.open_nursery() as nursery:
            values: list[int] = []

            async def call() -> None:
                if operation == "start_child":
                    values.append(await sup.start_child(ChildSpec("g", gated)))
                else:
                    values.append(await sup.restart_child("g"))

            nursery.start_soon(call)
            await until(sup, lambda: state(sup, "g") is ChildState.STARTING)
            ctl.crash("a")  # ONE_FOR_ALL: everyone else restarts, g's start goes on
            await until(sup, lambda: ctl.starts["a"] == 2)
            gated.gate.set()
        assert values == [gated.starts]
        assert state(sup, "g") is ChildState.RUNNING
        assert gated.starts == (1 if operation == "start_child" else 2)


async def test_a_restart_child_whose_caller_gives_up_leaves_the_child_terminated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gated = GatedStart()
    gated.gate.set()
    async with open_supervisor([ChildSpec("g", gated)]) as sup:
        gated.arm()
        with trio.move_on_after(1):
            await sup.restart_child("g")
        assert state(sup, "g") is ChildState.TERMINATED
        await trio.testing.wait_all_tasks_blocked()
        assert state(sup, "g") is ChildState.TERMINATED
        assert gated.starts == 2


async def test_a_start_child_whose_caller_gives_up_keeps_no_spec(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gated = GatedStart()  # never gets ready
    async with open_supervisor() as sup:
        with trio.move_on_after(1):
            await sup.start_child(ChildSpec("g", gated, start_timeout=None))
        await trio.testing.wait_all_tasks_blocked()
        assert sup.which_children() == []
        assert gated.starts == 1


async def test_terminate_child_cancels_a_pending_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    backoff = supervisors.Backoff(initial=5.0, maximum=5.0, jitter=0.0)
    async with open_supervisor([ChildSpec("a", ctl, args=("a",))], backoff=backoff) as sup:
        ctl.crash("a")
        await until(sup, lambda: state(sup, "a") is ChildState.RESTARTING)
        with pytest.raises(SupervisorError, match="terminate_child"):
            sup.delete_child("a")  # not while it is restarting
        await sup.terminate_child("a")
        await trio.sleep(10)  # past the backoff: a span in which nothing must happen
        assert state(sup, "a") is ChildState.TERMINATED
        assert ctl.starts["a"] == 1
        sup.delete_child("a")


async def test_start_child_racing_shutdown_raises_supervisor_not_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gated = GatedStart()  # never gets ready
    sup = Supervisor()
    errors: list[BaseException] = []

    async def start() -> None:
        try:
            await sup.start_child(ChildSpec("g", gated, start_timeout=None))
        except SupervisorNotRunning as exc:
            errors.append(exc)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            nursery.start_soon(start)
            await until(sup, lambda: state(sup, "g") is ChildState.STARTING)
            await sup.shutdown()
    assert len(errors) == 1
    with pytest.raises(SupervisorNotRunning):
        await sup.start_child(ChildSpec("h", gated))


async def test_a_start_that_answers_after_its_deadline_is_not_taken(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def late(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep(2.0)  # exactly at its start_timeout
        task_status.started()
        await trio.sleep_forever()

    with pytest.raises(supervisors.ChildStartError, match="within 2s"):
        async with open_supervisor([ChildSpec("late", late, start_timeout=2.0)]):
            pass


async def test_a_cascade_victim_counts_its_restart_but_not_toward_intensity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    children = [
        ChildSpec("db", ctl, args=("db",)),
        ChildSpec("repo", ctl, args=("repo",), depends_on=("db",)),
    ]
    async with open_supervisor(children, max_restarts=1, max_seconds=60, backoff=None) as sup:
        ctl.crash("repo")  # both die at once: repo because db is going down
        ctl.crash("db")
        await until(sup, lambda: ctl.starts["repo"] == 2 and ctl.starts["db"] == 2)
        assert [i.restarts for i in sup.which_children()] == [1, 1]
        assert len(sup._restart_times) == 1
