"""Behaviours of ``_child.py`` that the mutation run (``make mutants
MODULE=supervisors/_child.py``) found unchecked: each test's docstring names the mutants
it kills (``ChildHandle.cleanup_scope`` 3 is
``supervisors._child.xǁChildHandleǁcleanup_scope__mutmut_3``). docs/mutants.md."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

import supervisors
from supervisors import (
    ChildExited,
    ChildSpec,
    ChildStarted,
    ChildStartError,
    ChildState,
    ExitReason,
    Health,
    HealthChanged,
    Restart,
    current_child,
    open_supervisor,
    supervisor_spec,
)
from supervisors._stopper import hard_stop, open_stopper
from supervisors.testing import find_handle, kill

from ._helpers import Boom, Recorder, until

# ------------------------------------------------------------ cleanup scopes (budgets)


def cut_cleanup(
    log: list[tuple[str, float]], *, timeout: float | None = None
) -> Callable[..., Awaitable[None]]:
    """A child that crashes at t=1 (or waits to be stopped) and then cleans up in a
    ``cleanup_scope(timeout)`` that would take 100 s: ``log`` gets when it was cut."""

    async def child(
        crash: bool, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        try:
            if crash:
                await trio.sleep(1)
                raise Boom("crash")
            await trio.sleep_forever()
        finally:
            log.append(("cleanup from", trio.current_time()))
            with current_child().cleanup_scope(timeout) as scope:
                await trio.sleep(100)
            log.append(("cut" if scope.cancelled_caught else "done", trio.current_time()))

    return child


async def test_cleanup_after_a_crash_is_bounded_by_the_shutdown_budget_from_now(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ChildHandle.cleanup_scope 4 (the stop deadline, inf, when not stopping) and 5
    (``now - shutdown``: cut at once)."""
    log: list[tuple[str, float]] = []
    spec = ChildSpec("c", cut_cleanup(log), args=(True,), shutdown=3.0, restart=Restart.TEMPORARY)
    async with open_supervisor([spec]) as sup:
        await until(sup, lambda: len(log) == 2)
    assert log == [("cleanup from", 1.0), ("cut", 4.0)]


async def test_cleanup_timeout_shortens_the_budget_never_lengthens_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ChildHandle.cleanup_scope 7, 8, 9, 10, 11 (the deadline None or a failing
    ``min``), 12 (``now - timeout``) and module ``cleanup_scope`` 13 (the timeout
    dropped)."""
    for timeout, cut_at in ((0.5, 1.5), (10.0, 4.0)):
        log: list[tuple[str, float]] = []

        async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            try:
                await trio.sleep(1)
                raise Boom("crash")
            finally:
                with supervisors.cleanup_scope(timeout) as scope:  # noqa: B023
                    await trio.sleep(100)
                log.append(("cut" if scope.cancelled_caught else "done", trio.current_time()))  # noqa: B023

        start = trio.current_time()
        spec = ChildSpec("c", child, shutdown=3.0, restart=Restart.TEMPORARY)
        async with open_supervisor([spec]) as sup:
            await until(sup, lambda: len(log) == 1)  # noqa: B023
        assert log == [("cut", start + cut_at)]


async def test_cleanup_while_stopping_ends_at_the_stop_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ChildHandle.cleanup_scope 3 (``now + shutdown`` while stopping: a cleanup opened
    late in the stop would outlive the budget the supervisor waits for)."""
    log: list[tuple[str, float]] = []

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1)  # some of the budget goes first
            with supervisors.cleanup_scope() as scope:
                await trio.sleep(100)
            log.append(("cut" if scope.cancelled_caught else "done", trio.current_time()))

    async with open_supervisor([ChildSpec("c", child, shutdown=3.0)]):
        t0 = trio.current_time()
    assert log == [("cut", t0 + 3.0)]


async def test_a_hard_stop_cuts_a_childs_cleanup_scope(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ChildHandle.cleanup_scope 19 (the scope not registered for the hard stop)."""
    log: list[tuple[str, float]] = []

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with supervisors.cleanup_scope() as scope:
                await trio.sleep(100)
            log.append(("cut" if scope.cancelled_caught else "done", trio.current_time()))

    async def impatient() -> None:
        await trio.sleep(2)
        hard_stop()

    with open_stopper():
        async with (
            trio.open_nursery() as nursery,
            open_supervisor([ChildSpec("c", child, shutdown=10.0)]),
        ):
            t0 = trio.current_time()
            nursery.start_soon(impatient)
    assert log == [("cut", t0 + 2.0)]


async def test_cleanup_scope_outside_a_child_is_shielded_and_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Module ``cleanup_scope`` 3, 7 (not shielded), 4, 6 (no deadline), 5 (the
    default shield, off), 8 (``now - 5``), 9, 12 (``now + None``), 10 (the timeout
    ignored) and 11 (6 s by default)."""
    for timeout, cut_after in ((None, 5.0), (2.0, 2.0)):
        ran: list[tuple[bool, float]] = []
        t0 = trio.current_time()
        with trio.CancelScope() as outer:
            outer.cancel()  # the cleanup runs in a cancelled task, as after a crash
            with supervisors.cleanup_scope(timeout) as scope:
                await trio.sleep(100)
            ran.append((scope.cancelled_caught, trio.current_time() - t0))
        assert ran == [(True, cut_after)]


# --------------------------------------------------------------- starts and kills


async def test_a_start_reported_at_its_deadline_is_too_late(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ChildHandle.started 2 (a late ``started()`` accepted unless stopping) and 5
    (``>``: accepted exactly at the deadline)."""

    async def late(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        autojump_clock.jump(2.0)  # the start timeout passes with no checkpoint
        task_status.started()
        await trio.sleep_forever()

    rec = Recorder()
    async with open_supervisor([], on_event=rec) as sup:
        with pytest.raises(ChildStartError) as info:
            await sup.start_child(ChildSpec("late", late, start_timeout=2.0))
        assert isinstance(info.value.__cause__, TimeoutError)
        assert rec.of(ChildStarted) == []


async def test_inject_refuses_a_stopping_or_already_killed_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ChildHandle.inject 1, 2 (a stopping child, or one already killed, killed again)
    and 4 (``True`` for a refused kill)."""
    rec = Recorder()
    slow = ChildSpec("slow", cut_cleanup([]), args=(False,), shutdown=5.0)
    async with open_supervisor([slow], on_event=rec, backoff=None) as sup:
        first = Boom("first")
        assert kill(sup, "slow", first)
        handle = sup.child_handle("slow")
        assert handle is not None
        assert not handle.finished  # its cleanup runs: killed, not dead yet
        assert not handle.inject(Boom("second"))
        await until(sup, lambda: len(rec.of(ChildExited)) == 1)
        (exited,) = rec.of(ChildExited)
        assert (exited.reason, exited.exception) == (ExitReason.KILLED, first)
        await until(sup, lambda: sup.which_children()[0].state is ChildState.RUNNING)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.terminate_child, "slow")
            await until(sup, lambda: sup.which_children()[0].state is ChildState.STOPPING)
            handle = find_handle(sup, "slow")
            assert not handle.inject(Boom("while stopping"))
    assert [(e.reason, e.exception) for e in rec.of(ChildExited)] == [
        (ExitReason.KILLED, first),
        (ExitReason.SHUTDOWN, None),
    ]


async def test_supervisor_cancelled_from_outside_stops_children_one_by_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ChildHandle.__init__ 4, 5 (the child's scope not shielded: a cancel from outside
    the supervisor reaches every child at once, not in reverse order with budgets)."""
    stops: list[tuple[str, float]] = []

    async def child(
        name: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            stops.append((name, trio.current_time()))
            with supervisors.cleanup_scope():
                await trio.sleep(1)

    with trio.move_on_after(10):
        async with open_supervisor([ChildSpec(n, child, args=(n,)) for n in "ab"]):
            await trio.sleep_forever()
    assert stops == [("b", 10.0), ("a", 11.0)]


async def test_stack_of_a_finished_incarnation_is_empty(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ChildHandle.__init__ 17 (``finished`` None, not False, before the end); the
    stack of a finished task is empty (as ChildHandle.stack 1 leaves it: a finished
    task has no frames)."""

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async with open_supervisor([ChildSpec("c", child)]) as sup:
        handle = find_handle(sup, "c")
        before = handle.finished
        assert before is False
        assert any("sleep_forever" in line for line in handle.stack())
        await sup.terminate_child("c")
        assert handle.finished
        assert handle.stack() == ()


async def test_stack_of_an_incarnation_whose_task_has_not_run_is_empty(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ChildHandle.__init__ 6 (task "" before the task runs) and ChildHandle.stack 1
    (``and``: the frames of no task read). The mailbox hook sees each state change
    synchronously, so it sees the new incarnation before its task has run."""
    stacks: list[tuple[str, ...]] = []

    class Watcher:
        def _watch_child(self, child: object) -> None:
            handle = getattr(child, "handle", None)
            if handle is not None and getattr(child, "state", None) is ChildState.STARTING:
                stacks.append(handle.stack())

    async def plain(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async with open_supervisor([ChildSpec("c", plain, meta={"mailbox": Watcher()})]) as sup:
        await sup.restart_child("c")
    assert stacks == [(), ()]


async def test_progress_keeps_the_stall_watchdog_away(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ChildHandle.progress 1 (no time recorded; mutmut found no test calling it)."""
    rec = Recorder()

    async def busy(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        me = current_child()
        for _ in range(20):
            await trio.sleep(0.5)
            me.progress()
        await trio.sleep_forever()

    spec = ChildSpec("busy", busy, stall_timeout=1.0)
    async with open_supervisor([spec], on_event=rec):
        await trio.sleep(9.9)
        assert rec.of(ChildExited) == []
        await trio.sleep(1.2)  # no progress since t=10: stalled at t=11
    (exited, *_) = rec.of(ChildExited)
    assert (exited.reason, exited.time) == (ExitReason.STALLED, 11.0)


# ------------------------------------------------------------------------- health


async def test_health_changes_are_published_once_each_with_their_fields(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ChildHandle.set_health 5, 8, 9 (a repeat published again), 7 (a new status
    with the same reason dropped), 14, 15, 16, 18 (the event's supervisor, time,
    child and reason), and the default reason "" of ChildHandle.set_health 1 and
    module ``set_health`` 1."""
    rec = Recorder()

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        me = current_child()
        await trio.sleep(1)
        me.set_health(Health.DEGRADED, "slow")
        me.set_health(Health.DEGRADED, "slow")  # no change: no event
        await trio.sleep(1)
        me.set_health(Health.FAILED, "slow")  # the status alone changes
        await trio.sleep(1)
        supervisors.set_health(Health.FAILED)  # the reason alone changes (to "")
        me.set_health(Health.FAILED)
        await trio.sleep(1)
        me.set_health(Health.OK)
        await trio.sleep_forever()

    inner = supervisor_spec("inner", [ChildSpec("c", child)])
    async with open_supervisor([inner], on_event=rec) as sup:
        await until(sup, lambda: len(rec.of(HealthChanged)) == 4)
        await trio.sleep(10)
    events = [(e.supervisor, e.time, e.child, e.status, e.reason) for e in rec.of(HealthChanged)]
    assert events == [
        ("inner", 1.0, "c", Health.DEGRADED, "slow"),
        ("inner", 2.0, "c", Health.FAILED, "slow"),
        ("inner", 3.0, "c", Health.FAILED, ""),
        ("inner", 4.0, "c", Health.OK, ""),
    ]


async def test_a_stale_incarnation_cannot_set_health(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ChildHandle.set_health 5 (``and``: an old incarnation's change published)."""
    rec = Recorder()
    old: list[supervisors.ChildHandle] = []

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        old.append(current_child())
        task_status.started()
        await trio.sleep_forever()

    async with open_supervisor([ChildSpec("c", child)], on_event=rec) as sup:
        await sup.restart_child("c")
        assert len(old) == 2
        old[0].set_health(Health.FAILED, "gone")
        (info,) = sup.which_children()
        assert (info.health, info.health_reason) == (Health.OK, "")
    assert rec.of(HealthChanged) == []


# ------------------------------------------------------- a child's record, at first


async def test_a_child_not_started_yet_reads_as_starting_with_nothing_known(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Child.__init__ 26 (state None), 33 (started_at ""), 34 (last_error ""),
    39 (health None), 40, 41 (health_reason not ""), and Child.info 4 (started_at
    dropped) and 6 (kind dropped), read while an earlier sibling starts."""
    seen: list[list[supervisors.ChildInfo]] = []
    health: list[bool] = []

    async def first(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sup = current_child().supervisor
        await trio.sleep(1)
        seen.append(sup.which_children())
        health.append(sup.health().live)
        task_status.started()
        await trio.sleep_forever()

    async def plain(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    children = [ChildSpec("a", first), ChildSpec("b", plain), supervisor_spec("s", [])]
    async with open_supervisor(children) as sup:
        after = sup.which_children()
    ((a, b, _),) = seen
    assert (b.state, b.started_at, b.last_error, b.health, b.health_reason) == (
        ChildState.STARTING,
        None,
        None,
        Health.OK,
        "",
    )
    assert a.state is ChildState.STARTING
    assert health == [True]
    assert [(i.id, i.kind, i.started_at) for i in after] == [
        ("a", "worker", 1.0),
        ("b", "worker", 1.0),
        ("s", "supervisor", 1.0),
    ]


async def test_incarnations_count_from_one(autojump_clock: trio.testing.MockClock) -> None:
    """Child.__init__ 32 (incarnation 1 before the first start) and ChildHandle.__init__
    2 (the handle's incarnation None)."""
    rec = Recorder()
    async with open_supervisor(
        [ChildSpec("c", cut_cleanup([]), args=(True,))], on_event=rec
    ) as sup:
        await until(sup, lambda: len(rec.of(ChildStarted)) == 2)
    assert [e.incarnation for e in rec.of(ChildStarted)] == [1, 2]
    assert [e.incarnation for e in rec.of(ChildExited)][:2] == [1, 2]


async def test_a_meta_mailbox_without_depth_is_not_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Child.__init__ 11 (anything under meta["mailbox"] taken for a mailbox)."""

    async def plain(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    spec = ChildSpec("c", plain, meta={"mailbox": "not a mailbox"})
    async with open_supervisor([spec]) as sup:
        (node,) = sup.snapshot()["children"]
    assert node["mailbox"] is None
