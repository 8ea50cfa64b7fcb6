"""Behaviours of ``_supervisor.py`` that the mutation run (``make mutants``) found
unchecked: each test asserts what a surviving mutant changed (its name in the comment),
so the mutant now fails it. docs/testing.md, "How the project checks its tests"."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from supervisors import (
    ChildExited,
    ChildRestarting,
    ChildSpec,
    ChildStartError,
    ChildStartFailed,
    ChildState,
    Escalating,
    ExitReason,
    Health,
    RestartIntensityExceeded,
    Strategy,
    current_child,
    open_supervisor,
    set_health,
    supervisor_spec,
)

from ._helpers import Boom, Controlled, Recorder, until


async def test_count_children_tells_supervisors_from_workers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # count_children__mutmut_5 (kind != "supervisor"): one of each could not tell.
    ctl = Controlled()
    children = [
        ChildSpec("w1", ctl, args=("w1",)),
        ChildSpec("w2", ctl, args=("w2",)),
        supervisor_spec("s", [ChildSpec("x", ctl, args=("x",))]),
    ]
    async with open_supervisor(children) as sup:
        counts = sup.count_children()
    assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (3, 3, 1, 2)


async def test_escalation_event_and_error_say_who_when_and_why(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _escalate__mutmut_4/6/7/8/16: the Escalating event's time, exception, restarts and
    # window, and the error's supervisor path.
    async def crash(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(1)
        raise Boom("again")

    rec = Recorder()
    with pytest.raises(RestartIntensityExceeded) as info:
        async with open_supervisor(
            [ChildSpec("c", crash)], max_restarts=2, max_seconds=7.5, backoff=None, on_event=rec
        ):
            await trio.sleep_forever()
    (escalating,) = rec.of(Escalating)
    assert (escalating.supervisor, escalating.child) == ("", "c")
    assert isinstance(escalating.exception, Boom)
    assert (escalating.restarts, escalating.window) == (2, 7.5)
    assert escalating.time == 3.0  # the third crash, one second apart
    error = info.value
    assert (error.supervisor, error.child, error.restarts, error.window) == ("", "c", 2, 7.5)
    assert isinstance(error.__cause__, Boom)


async def test_a_child_that_restarts_itself_counts_each_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _after_self_stop__mutmut_4 (restarts = 1), _10/_12/_22 (the restart event's delay
    # and cause): a self-restart counts per child and starts the next incarnation at once.
    starts: list[float] = []

    async def again(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        starts.append(trio.current_time())
        task_status.started()
        if len(starts) < 4:
            await trio.sleep(1)
            sup = current_child().supervisor
            await sup.restart_child("a")
        await trio.sleep_forever()

    rec = Recorder()
    async with open_supervisor([ChildSpec("a", again)], on_event=rec) as sup:
        await until(sup, lambda: len(starts) == 4)
        (info,) = sup.which_children()
    assert info.restarts == 3
    assert info.state is ChildState.RUNNING
    assert starts == [0.0, 1.0, 2.0, 3.0]
    assert [(e.child, e.delay, e.cause) for e in rec.of(ChildRestarting)] == [("a", 0.0, "a")] * 3


async def test_a_child_that_terminates_itself_is_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The other half of _after_self_stop: terminated, it stays so (restart_at = None for
    # inf, _after_self_stop__mutmut_3, survives: a terminated child is never scheduled).
    starts = 0

    async def once(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal starts
        starts += 1
        task_status.started()
        await current_child().supervisor.terminate_child("a")
        await trio.sleep_forever()

    async with open_supervisor([ChildSpec("a", once)]) as sup:
        await until(sup, lambda: sup.which_children()[0].state is ChildState.TERMINATED)
        await trio.sleep(60)
        (info,) = sup.which_children()
        assert info.state is ChildState.TERMINATED
    assert starts == 1


async def test_a_child_that_fails_to_start_is_forgotten_with_its_path_in_the_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # start_child__mutmut_31 (the error's child path), _37.._40 (the failed child removed).
    ctl = Controlled()
    ctl.fail_start["late"] = 1
    rec = Recorder()
    async with open_supervisor([ChildSpec("w", ctl, args=("w",))], on_event=rec) as sup:
        with pytest.raises(ChildStartError) as info:
            await sup.start_child(ChildSpec("late", ctl, args=("late",)))
        assert info.value.child == "late"
        assert isinstance(info.value.__cause__, Boom)
        assert [c.id for c in sup.which_children()] == ["w"]
        # the id is free again
        assert await sup.start_child(ChildSpec("late", ctl, args=("late",))) == "late"
    (failed,) = rec.of(ChildStartFailed)
    assert failed.child == "late"


async def test_a_dependent_failing_while_its_dependency_starts_is_not_a_root_cause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _fail__mutmut_2 (no blocking dependency: the failure counts toward the intensity),
    # _9/_11/_19.._31 but _22/_24 (its restart's time, cause, delay): a child that fails
    # while a dependency is down restarts after it, caused by it, and is not counted.
    db_ready = trio.Event()
    app_crash = trio.Event()
    starts: list[str] = []

    async def db(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        starts.append(f"db@{trio.current_time():g}")
        if len(starts) > 2:
            await db_ready.wait()  # the manual restart's start takes a while
        task_status.started()
        await trio.sleep_forever()

    async def app(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        starts.append(f"app@{trio.current_time():g}")
        task_status.started()
        if starts.count(starts[-1]) == 1 and len(starts) == 2:
            await app_crash.wait()
            raise Boom("the db went away")
        await trio.sleep_forever()

    rec = Recorder()
    children = [ChildSpec("db", db), ChildSpec("app", app, depends_on=("db",))]
    async with open_supervisor(children, max_restarts=0, on_event=rec) as sup:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.restart_child, "db")
            await until(sup, lambda: len(starts) == 3)  # db's new start is under way
            await trio.sleep(1)
            app_crash.set()
            await trio.sleep(1)
            db_ready.set()
        await until(sup, lambda: all(c.state is ChildState.RUNNING for c in sup.which_children()))
    assert not rec.of(Escalating)
    restarts = [(e.child, e.cause, e.delay) for e in rec.of(ChildRestarting)]
    assert ("app", "db", 0.0) in restarts, restarts


async def test_a_start_child_its_caller_gave_up_on_is_stopped_and_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # start_child__mutmut_37/39: the caller was cancelled before the child was ready: the
    # start is stopped and the spec dropped, as documented (not kept, not restarted).
    starts = 0

    async def slow(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal starts
        starts += 1
        await trio.sleep(10)
        task_status.started()
        await trio.sleep_forever()

    async with open_supervisor([]) as sup:
        with trio.move_on_after(1):
            await sup.start_child(ChildSpec("slow", slow))
        await trio.sleep(20)
        assert sup.which_children() == []
    assert starts == 1


async def test_a_new_incarnation_starts_healthy_with_no_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _spawn__mutmut_19/20: the reason the last incarnation gave stayed on the new one.
    runs = 0

    async def sick(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs == 1:
            set_health(Health.DEGRADED, "replica lagging")
            await trio.sleep(1)
            raise Boom("lost it")
        await trio.sleep_forever()

    async with open_supervisor([ChildSpec("s", sick)], backoff=None) as sup:
        await until(sup, lambda: sup.which_children()[0].health_reason == "replica lagging")
        await until(sup, lambda: runs == 2)
        (info,) = sup.which_children()
        assert (info.health, info.health_reason) == (Health.OK, "")


def test_a_nested_supervisor_budget_is_its_childrens_plus_one_unless_given() -> None:
    # supervisor_spec__mutmut_13/18/39: the default shutdown budget, and a given one.
    async def idle() -> None:
        await trio.sleep_forever()

    children = [ChildSpec("a", idle, shutdown=2.0), ChildSpec("b", idle, shutdown=3.0)]
    assert supervisor_spec("s", children).shutdown == 6.0
    assert supervisor_spec("s", children, shutdown=4.0).shutdown == 4.0


async def test_health_during_a_restart_storm_is_not_live_up_the_tree(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # health__mutmut_10/11/12 (the storm's threshold, live), _25 (a subtree's liveness),
    # _32 (a stopped child hides the children after it), _34 (ready is False).
    ctl = Controlled()
    inner = supervisor_spec(
        "inner", [ChildSpec("c", ctl, args=("c",))], max_restarts=2, max_seconds=60, backoff=None
    )
    children = [
        ChildSpec("gone", ctl, args=("gone",)),
        ChildSpec("w", ctl, args=("w",)),
        inner,
    ]
    async with open_supervisor(children, max_restarts=10, backoff=None) as sup:
        assert sup.health().live is True
        await sup.terminate_child("gone")
        for _ in range(2):
            starts = ctl.starts["c"]
            ctl.crash("c")
            await until(sup, lambda: ctl.starts["c"] == starts + 1)  # noqa: B023
            await trio.testing.wait_all_tasks_blocked()
        report = sup.health()
        assert report.live is False
        assert report.ready is False
        assert any("inner: restart storm (2 restarts" in r for r in report.reasons), report
        await sup.terminate_child("w")
        ctl.fail_start["w"] = 1
        with pytest.raises(ChildStartError):
            await sup.restart_child("w")
        report = sup.health()
        assert "w: failed" in report.reasons, report
        assert report.ready is False


async def test_a_sibling_that_died_in_the_same_failure_is_reported_with_its_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _claim__mutmut_20/21/27: the victim that had died on its own is reported with its
    # exception, and keeps it as its last error.
    runs: dict[str, int] = {}

    def crash_once(name: str) -> ChildSpec:
        async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            runs[name] = runs.get(name, 0) + 1
            task_status.started()
            if runs[name] == 1:
                await trio.sleep(1)
                raise Boom(f"{name} crashed")
            await trio.sleep_forever()

        return ChildSpec(name, child)

    rec = Recorder()
    async with open_supervisor(
        [crash_once("a"), crash_once("b")],
        strategy=Strategy.ONE_FOR_ALL,
        max_restarts=1,
        backoff=None,
        on_event=rec,
    ) as sup:
        await until(sup, lambda: runs == {"a": 2, "b": 2})
        errors = {i.id: str(i.last_error) for i in sup.which_children()}
    exits = [
        (e.child, str(e.exception), e.will_restart)
        for e in rec.of(ChildExited)
        if e.reason is ExitReason.EXCEPTION
    ]
    assert sorted(exits) == [("a", "a crashed", True), ("b", "b crashed", True)]
    assert errors == {"a": "a crashed", "b": "b crashed"}
