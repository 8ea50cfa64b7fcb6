"""More behaviours of ``_supervisor.py`` that the mutation run found unchecked (issue 28):
stopping, exits nobody handled, manual restarts and terminations that take a queued
exit over, the accepting flags, and event fields. Each test names the mutants it kills
(``Function N`` is ``supervisors._supervisor.xǁSupervisorǁFunction__mutmut_N``);
docs/mutants.md lists them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from supervisors import (
    ChildExited,
    ChildOverstayed,
    ChildRestarting,
    ChildSpec,
    ChildStarted,
    ChildStartError,
    ChildStartFailed,
    ChildState,
    ExitReason,
    Health,
    Strategy,
    Supervisor,
    SupervisorNotRunning,
    SupervisorStarted,
    current_child,
    open_supervisor,
    set_health,
    supervisor_spec,
)

from ._helpers import Boom, Controlled, Recorder, until


def worker(
    crash_at: float | None = None, stop_for: float = 0.0, *, slow_once: bool = False
) -> Callable[..., Any]:
    """A child whose first incarnation raises ``Boom`` at ``crash_at`` (absolute virtual
    time); later ones run for ever. Cancelled, it takes ``stop_for`` seconds to stop
    (only the first incarnation with ``slow_once``)."""
    runs = 0

    async def run(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        first = runs == 1
        task_status.started(runs)
        try:
            if first and crash_at is not None:
                await trio.sleep_until(crash_at)
                raise Boom("crash")
            await trio.sleep_forever()
        except trio.Cancelled:
            if stop_for and (first or not slow_once):
                with trio.CancelScope(shield=True):
                    await trio.sleep(stop_for)
            raise

    return run


def state(sup: Supervisor, child_id: str) -> ChildState:
    return next(i.state for i in sup.which_children() if i.id == child_id)


def exits(rec: Recorder, child_id: str) -> list[tuple[Any, ...]]:
    return [
        (e.reason, type(e.exception), e.incarnation, e.will_restart)
        for e in rec.of(ChildExited)
        if e.child == child_id
    ]


async def test_shutdown_reports_the_exits_still_queued_once_each(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _stop_all 7, 9 (sorting the queued exits without a key), 13 (a claimed exit
    # reported again), 14 (the unclaimed one not reported), 15 (break at the claimed
    # one: the next one never reported), 16, 17 (not marked claimed: a terminate_child
    # waiting for the lock reports it again), 19, 20, 21 (its handle, reason, exception);
    # _report_unhandled 10, 11 (last_error), _publish_exit 8 (incarnation).
    # a crashes at t=1 with c and e; handling a stops its dependent d (2 s, so until
    # t=3), and c (a dependent that died too) is claimed then. The shutdown asked at
    # t=2 leaves c and e queued: the final stop reports e (not c again), and stops f
    # (2 s) while a terminate_child("e") waits for the lock.
    rec = Recorder()
    children = [
        ChildSpec("a", worker(crash_at=1)),
        ChildSpec("d", worker(stop_for=2), depends_on=("a",), shutdown=10),
        ChildSpec("c", worker(crash_at=1), depends_on=("a",)),
        ChildSpec("e", worker(crash_at=1)),
        ChildSpec("f", worker(stop_for=2), shutdown=10),
    ]
    async with open_supervisor(children, backoff=None, on_event=rec) as sup:
        await trio.sleep(2)
        sup.shutdown_nowait()
        await trio.sleep(2)
        await sup.terminate_child("e")
    assert exits(rec, "c") == [(ExitReason.EXCEPTION, Boom, 1, True)]
    assert exits(rec, "e") == [(ExitReason.EXCEPTION, Boom, 1, False)]
    (e_exit,) = (e for e in rec.of(ChildExited) if e.child == "e")
    assert e_exit.time == 3.0  # by the final stop, not by the terminate_child at t=5
    last_error = next(i.last_error for i in sup.which_children() if i.id == "e")
    assert last_error is e_exit.exception


async def test_a_manual_stop_takes_over_a_queued_exit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # terminate_child 18, 22 and _stop_child 4: terminating a child whose crash is
    # queued reports that exit (not restarted) instead of leaving it to the loop, which
    # would restart it; restart_child 22, 23: a restart_child reports it too; _serve 5:
    # exits that arrived while the loop was busy are handled, the loop goes on.
    # a crashes at t=1; handling it stops d for 2 s. t, u and v crash at t=1.5 and queue;
    # terminate_child("t") (t=2) then restart_child("v") (t=2.5) wait for the lock and
    # get it before the loop does.
    rec = Recorder()
    children = [
        ChildSpec("a", worker(crash_at=1)),
        ChildSpec("d", worker(stop_for=2), depends_on=("a",), shutdown=10),
        ChildSpec("t", worker(crash_at=1.5)),
        ChildSpec("u", worker(crash_at=1.5)),
        ChildSpec("v", worker(crash_at=1.5)),
    ]
    async with open_supervisor(children, backoff=None, on_event=rec) as sup:

        async def terminate() -> None:
            await trio.sleep(2)
            await sup.terminate_child("t")

        async def restart() -> None:
            await trio.sleep(2.5)
            assert await sup.restart_child("v") == 2

        async with trio.open_nursery() as nursery:
            nursery.start_soon(terminate)
            nursery.start_soon(restart)
        await until(
            sup, lambda: all(state(sup, c) is ChildState.RUNNING for c in "adtuv" if c != "t")
        )
        await trio.sleep(5)
        assert sup.running
        assert state(sup, "t") is ChildState.TERMINATED
        assert [(i.id, i.restarts) for i in sup.which_children()] == [
            ("a", 1),
            ("d", 1),
            ("t", 0),
            ("u", 1),
            ("v", 1),
        ]
    assert exits(rec, "t")[0] == (ExitReason.EXCEPTION, Boom, 1, False)
    assert exits(rec, "u")[0] == (ExitReason.EXCEPTION, Boom, 1, True)
    assert exits(rec, "v")[0] == (ExitReason.EXCEPTION, Boom, 1, False)
    starts = [(e.child, e.incarnation) for e in rec.of(ChildStarted)]
    assert ("t", 2) not in starts
    assert ("v", 2) in starts


@pytest.mark.parametrize("how", ["raise", "return"])
async def test_a_restart_failing_to_start_during_shutdown_is_reported(
    autojump_clock: trio.testing.MockClock, how: str
) -> None:
    # _report_unhandled 2-9 (the START_FAILED branch: its failure, last_error and event),
    # _publish_start_failed 2 (the event's supervisor). a crashes at t=1 and restarts; its
    # second start fails at t=3, while the shutdown (from t=1.5) waits 5 s for b.
    runs = 0

    async def a(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            task_status.started()
            await trio.sleep_until(1)
            raise Boom("crash")
        await trio.sleep_until(3)
        if how == "raise":
            raise Boom("late")

    rec = Recorder()
    children = [ChildSpec("a", a), ChildSpec("b", worker(stop_for=5), shutdown=10)]
    async with open_supervisor(children, backoff=None, on_event=rec) as sup:
        await trio.sleep(1.5)
    (failed,) = rec.of(ChildStartFailed)
    assert (failed.supervisor, failed.child, failed.time) == ("", "a", 3.0)
    if how == "raise":
        assert isinstance(failed.exception, Boom)
        assert str(failed.exception) == "late"
    else:
        assert type(failed.exception) is RuntimeError
    info = sup.which_children()[0]
    assert info.last_error is failed.exception
    assert runs == 2


async def test_not_accepting_before_running_while_starting_and_once_stopping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _reset 17, 18 (accepting before run and during the initial start), health 20 (a
    # child not spawned yet has no handle), run 5 (no report while running), run 31-34
    # (SupervisorStarted), run 38 (started(self)), shutdown_nowait 3, 4 and _stop_all 3
    # (not accepting once asked to stop, and after).
    gate = trio.Event()

    async def slow(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await gate.wait()
        task_status.started()
        await trio.sleep_forever()

    rec = Recorder()
    children = [
        ChildSpec("a", slow, significant=False),
        ChildSpec("b", worker(), significant=False),
    ]
    sup = Supervisor(children, on_event=rec)
    assert sup.health().ready is False
    got: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def go() -> None:
            got.append(await nursery.start(sup.run))

        nursery.start_soon(go)
        await trio.sleep(1)
        assert sup.running
        report = sup.health()
        assert (report.live, report.ready) == (True, False)
        assert sup.shutdown_report is None
        with pytest.raises(SupervisorNotRunning):
            await sup.start_child(ChildSpec("x", worker()))
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert got == [sup]
        assert sup.health().ready is True
        assert [(e.supervisor, e.time, e.children) for e in rec.of(SupervisorStarted)] == [
            ("", 1.0, 2)
        ]
        sup.shutdown_nowait()
        assert sup.health().ready is False
        with pytest.raises(SupervisorNotRunning):
            await sup.start_child(ChildSpec("x", worker()))
    assert sup.health().ready is False


async def test_a_significant_child_reporting_failed_makes_the_tree_not_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # health 40: ready is False (not None) while a significant child reports FAILED.
    async def sick(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        set_health(Health.FAILED)
        await trio.sleep_forever()

    async with open_supervisor([ChildSpec("a", sick)]) as sup:
        await trio.testing.wait_all_tasks_blocked()
        report = sup.health()
        assert (report.live, report.ready) == (True, False)


async def test_a_pending_victim_rescheduled_counts_one_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _schedule 2 (a victim already waiting in a wave counted again), 17, 20 (the
    # ChildRestarting event's time and attempt). a crashes (a and b restart), a's next
    # start fails: b, still waiting, is rescheduled without another count.
    ctl = Controlled()
    rec = Recorder()
    children = [ChildSpec("a", ctl, args=("a",)), ChildSpec("b", ctl, args=("b",))]
    async with open_supervisor(
        children, strategy=Strategy.ONE_FOR_ALL, backoff=None, on_event=rec
    ) as sup:
        await trio.sleep(1)
        ctl.fail_start["a"] = 1
        ctl.crash("a")
        await until(sup, lambda: ctl.starts.get("a") == 3 and ctl.starts.get("b") == 2)
        await until(sup, lambda: state(sup, "b") is ChildState.RUNNING)
        assert [(i.id, i.restarts) for i in sup.which_children()] == [("a", 2), ("b", 1)]
    assert [(e.child, e.time, e.attempt) for e in rec.of(ChildRestarting)] == [
        ("a", 1.0, 0),
        ("b", 1.0, 0),
        ("a", 1.0, 1),
        ("b", 1.0, 1),
    ]


async def test_a_deleted_dependent_is_forgotten_by_its_dependency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # start_child 7, 14 (a new child may depend on an existing one), _remove 3, 4, 6, 7:
    # once b (depending on a) is deleted, a new b that does not depend on a is not a
    # victim of a's failure.
    ctl = Controlled()
    async with open_supervisor([ChildSpec("a", ctl, args=("a",))], backoff=None) as sup:
        assert await sup.start_child(ChildSpec("b", ctl, args=("b",), depends_on=("a",))) == "b"
        await sup.terminate_child("b")
        sup.delete_child("b")
        await sup.start_child(ChildSpec("b", ctl, args=("b",)))
        ctl.crash("a")
        await until(sup, lambda: ctl.starts["a"] == 2 and state(sup, "a") is ChildState.RUNNING)
        await trio.sleep(1)
        assert ctl.starts["b"] == 2
        assert state(sup, "b") is ChildState.RUNNING


async def test_manual_restarts_count_and_number_incarnations(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # restart_child 51, 52, 53 (restarts), 64 (the start awaited); _spawn 4, 5, 6
    # (incarnation numbers), 24, 28 (the child's task is named by its path).
    names: list[str] = []

    async def child(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        names.append(trio.lowlevel.current_task().name)
        task_status.started(current_child().incarnation)
        await trio.sleep_forever()

    rec = Recorder()
    async with open_supervisor([ChildSpec("a", child)], on_event=rec) as sup:
        assert await sup.restart_child("a") == 2
        assert await sup.restart_child("a") == 3
        assert sup.which_children()[0].restarts == 2
    assert [e.incarnation for e in rec.of(ChildStarted)] == [1, 2, 3]
    assert names == ["a", "a", "a"]


async def test_a_failed_start_names_the_child_and_leaves_it_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # restart_child 66, 67, 68 (FAILED after a failed restart), 71 (the stopping check's
    # arguments), 73 (the error's child); start_child 38 (the same for start_child).
    ctl = Controlled()
    async with open_supervisor([ChildSpec("a", ctl, args=("a",))]) as sup:
        ctl.fail_start["a"] = 1
        with pytest.raises(ChildStartError) as info:
            await sup.restart_child("a")
        assert info.value.child == "a"
        assert isinstance(info.value.__cause__, Boom)
        assert state(sup, "a") is ChildState.FAILED
        ctl.fail_start["b"] = 1
        with pytest.raises(ChildStartError) as info:
            await sup.start_child(ChildSpec("b", ctl, args=("b",)))
        assert info.value.child == "b"
        assert isinstance(info.value.__cause__, Boom)


@pytest.mark.parametrize("call", ["terminate_child", "restart_child"])
async def test_a_cancelled_caller_still_finishes_the_stop(
    autojump_clock: trio.testing.MockClock, call: str
) -> None:
    # terminate_child 19, 20 and restart_child 19, 20: the stop is shielded from the
    # caller's cancellation; the child ends TERMINATED, not left STOPPING.
    async with open_supervisor([ChildSpec("a", worker(stop_for=2), shutdown=10)]) as sup:
        with trio.move_on_after(1):
            await getattr(sup, call)("a")
        assert state(sup, "a") is ChildState.TERMINATED


async def test_an_overstaying_restart_is_reported_and_restarted_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # restart_child 33, 34, 35, 43 (the ChildRestarting event), 44 (the error's child);
    # _stop_child 11, 20, 21, 23, 24 (the ChildOverstayed event), 33 (the budget in the
    # shutdown report). a's first incarnation takes 3 s to stop, its budget is 1 s.
    rec = Recorder()
    children = [ChildSpec("a", worker(stop_for=3, slow_once=True), shutdown=1)]
    async with open_supervisor(children, on_event=rec) as sup:
        await trio.sleep(1)
        with pytest.raises(ChildStartError) as info:
            await sup.restart_child("a")
        assert info.value.child == "a"
        assert trio.current_time() == 2.0
        await until(sup, lambda: sup.which_children()[0].state is ChildState.RUNNING)
        assert trio.current_time() == 4.0
    (over,) = rec.of(ChildOverstayed)
    assert (over.supervisor, over.time, over.child, over.budget) == ("", 2.0, "a", 1.0)
    assert isinstance(over.stack, tuple)
    assert over.stack
    restarting = [(e.child, e.time, e.delay, e.attempt, e.cause) for e in rec.of(ChildRestarting)]
    assert restarting == [("a", 2.0, 0.0, 0, "a")]
    report = sup.shutdown_report
    assert report is not None
    assert [(o.path, o.budget, o.overstayed_by, o.stack) for o in report.overstayed] == [
        ("a", 1.0, 2.0, over.stack)
    ]


async def test_an_initial_start_stopped_by_a_sibling_names_the_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _start_initial 19, 21, 22: the ChildStartError of a preempted initial start.
    async def a(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(1)
        await current_child().supervisor.terminate_child("b")
        await trio.sleep_forever()

    async def b(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep_forever()

    with pytest.raises(ChildStartError) as info:
        async with open_supervisor([ChildSpec("a", a), ChildSpec("b", b)]):
            pass
    assert info.value.child == "b"


async def test_an_initial_start_failure_leaves_the_child_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _start_initial 13: FAILED, not TERMINATED by the final stop.
    ctl = Controlled()
    ctl.fail_start["b"] = 1
    sup = Supervisor([ChildSpec("a", ctl, args=("a",)), ChildSpec("b", ctl, args=("b",))])
    with pytest.raises(ChildStartError):
        await sup.run()
    assert [(i.id, i.state) for i in sup.which_children()] == [
        ("a", ChildState.TERMINATED),
        ("b", ChildState.FAILED),
    ]


async def test_a_nested_supervisor_is_named_by_its_spec_id(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # supervisor_spec 8, 10: Supervisor(name=id).
    names: list[str] = []

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        names.append(current_child().supervisor.name)
        task_status.started()
        await trio.sleep_forever()

    async with open_supervisor([supervisor_spec("s", [ChildSpec("x", child)])]):
        pass
    assert names == ["s"]


async def test_a_child_terminating_itself_exits_cleanly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _stop_self 6: the stop begins for the child itself (no error inside the child).
    async def once(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await current_child().supervisor.terminate_child("a")
        await trio.sleep_forever()

    rec = Recorder()
    async with open_supervisor([ChildSpec("a", once)], on_event=rec) as sup:
        await until(sup, lambda: state(sup, "a") is ChildState.TERMINATED)
    assert [(e.reason, e.exception) for e in rec.of(ChildExited)] == [(ExitReason.SHUTDOWN, None)]


class _Laggard:
    """Children ``a`` and ``b`` that crash when told; ``a`` only ``lag`` scheduling
    steps after ``b`` (checkpoints take no virtual time)."""

    def __init__(self, lag: int) -> None:
        self.lag = lag
        self.crash: dict[str, trio.Event] = {}
        self.starts = {"a": 0, "b": 0}

    async def __call__(
        self, name: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.starts[name] += 1
        crash = self.crash[name] = trio.Event()
        task_status.started()
        await crash.wait()
        if name == "a":
            for _ in range(self.lag):
                await trio.lowlevel.checkpoint()
        raise Boom(name)


@pytest.mark.parametrize(("lag", "b_starts_per_round"), [(3, 1), (5, 2)])
async def test_exits_of_one_instant_are_handled_together_after_two_quiet_passes(
    autojump_clock: trio.testing.MockClock, lag: int, b_starts_per_round: int
) -> None:
    # _settle: b crashes, a (started first) a few scheduling steps later, at the same
    # virtual instant. Three steps later (lag 3) it is still in the same batch: a's
    # failure is handled first and restarts b once with it (REST_FOR_ONE). Five steps
    # later (lag 5) the loop has stopped waiting after two quiet passes (and taken its
    # lock, one step more): b restarts alone, then again as a's victim. Whether trio runs
    # the loop before or after a's last step varies (batch order), so a mutant one step
    # off is caught in about half the rounds: twelve rounds. lag 3 kills _settle 1, 6
    # (the time compared wrongly: no waiting), 4, 13 (one quiet pass is enough), 9 (a
    # TypeError after a new exit); lag 5 kills 2, 7, 11, 12 (all eight passes), 14
    # (three quiet passes).
    kids = _Laggard(lag)
    children = [ChildSpec("a", kids, args=("a",)), ChildSpec("b", kids, args=("b",))]
    async with open_supervisor(
        children, strategy=Strategy.REST_FOR_ONE, backoff=None, max_restarts=1000
    ) as sup:
        for round_ in range(1, 13):
            await trio.testing.wait_all_tasks_blocked()
            before = kids.starts["b"]
            kids.crash["a"].set()
            kids.crash["b"].set()

            def settled(n: int = round_ + 1) -> bool:
                running = all(i.state is ChildState.RUNNING for i in sup.which_children())
                return kids.starts["a"] == n and running

            await until(sup, settled)
            await trio.testing.wait_all_tasks_blocked()
            assert kids.starts["b"] - before == b_starts_per_round, f"round {round_}"


async def test_a_restart_failing_during_shutdown_says_not_running_with_its_cause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # restart_child 70: SupervisorNotRunning keeps the failure as its cause. a's new
    # start fails at t=2, while the shutdown (from t=1) stops b for 5 s.
    runs = 0

    async def a(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            await trio.sleep_until(2)
            raise Boom("late")
        task_status.started()
        await trio.sleep_forever()

    errors: list[BaseException] = []
    children = [ChildSpec("a", a), ChildSpec("b", worker(stop_for=5), shutdown=10)]
    async with open_supervisor(children) as sup:

        async def restart() -> None:
            try:
                await sup.restart_child("a")
            except SupervisorNotRunning as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(restart)
            await trio.sleep(1)
            sup.shutdown_nowait()
    (error,) = errors
    assert isinstance(error.__cause__, Boom)


async def test_two_overstaying_restarts_restart_independently(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # restart_child 36: each overstayed restart_child starts its own wave: b, whose old
    # incarnation ends first (t=5), restarts then, not after a (t=10).
    rec = Recorder()
    children = [
        ChildSpec("a", worker(stop_for=10, slow_once=True), shutdown=1),
        ChildSpec("b", worker(stop_for=4, slow_once=True), shutdown=1),
    ]
    async with open_supervisor(children, on_event=rec) as sup:
        with pytest.raises(ChildStartError):
            await sup.restart_child("a")
        with pytest.raises(ChildStartError):
            await sup.restart_child("b")
        await until(sup, lambda: all(i.state is ChildState.RUNNING for i in sup.which_children()))
    started = [(e.child, e.time) for e in rec.of(ChildStarted) if e.time > 0]
    assert started == [("b", 5.0), ("a", 10.0)]
