"""More behaviours of ``_supervisor.py`` that the mutation run (``make mutants``) found
unchecked (issue 28, point 3): each test names in its comment the surviving mutants it
kills (``Supervisor._fail`` 5 is ``xǁSupervisorǁ_fail__mutmut_5``). docs/mutants.md."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from supervisors import (
    Backoff,
    ChildExited,
    ChildRestarting,
    ChildSpec,
    ChildStarted,
    ChildStartError,
    ChildStartFailed,
    ChildState,
    ExitReason,
    Restart,
    RestartIntensityExceeded,
    ShutdownReport,
    Strategy,
    Supervisor,
    SupervisorNotRunning,
    SupervisorStopped,
    current_child,
    open_supervisor,
)
from supervisors._backoff import jitter_draw

from ._helpers import Boom, Controlled, Recorder, until


async def test_the_documented_defaults_and_argument_checks() -> None:
    # __init__ 1, 2 (max_restarts 3 in max_seconds 5), 13, 26 (a bool max_seconds, a str
    # event_buffer are refused), 43 (running is False), 46 (no report before a run).
    sup = Supervisor()
    assert (sup.max_restarts, sup.max_seconds) == (3, 5.0)
    assert sup.running is False
    assert sup.shutdown_report is None
    with pytest.raises(SupervisorNotRunning):
        await sup.shutdown()
    with pytest.raises(TypeError):
        Supervisor(max_seconds=True)
    with pytest.raises(TypeError):
        Supervisor(event_buffer="10")  # type: ignore[arg-type]


async def test_an_event_stream_holds_a_thousand_events_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # __init__ 4 (event_buffer 1001): a reader that reads nothing keeps the last 1000.
    async def idle(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    sup = Supervisor([ChildSpec(f"c{i}", idle) for i in range(600)])
    stream = sup.events()
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await sup.shutdown()
    received = [event async for event in stream]
    assert len(received) + stream.dropped > 1001
    assert len(received) == 1000


async def test_the_shutdown_report_and_stopped_event_say_when_and_how_long(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _finish 5 (the overstay's budget), 16 (overstayed by 0.5, not 1.0), 19 (the
    # supervisor's path), 20, 21, 27 (time, duration), 31 (SupervisorStopped's time),
    # 40 (running is False again).
    async def stubborn(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1.5)

    await trio.sleep(10)
    rec = Recorder()
    sup = Supervisor([ChildSpec("s", stubborn, shutdown=1.0)], on_event=rec)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        was_running = sup.running
        await trio.sleep(2)
        report = await sup.shutdown()
    assert (was_running, sup.running) == (True, False)
    assert report.supervisor == ""
    assert report.time == pytest.approx(13.5)
    assert report.duration == pytest.approx(3.5)
    ((path, budget, by),) = [(o.path, o.budget, o.overstayed_by) for o in report.overstayed]
    assert (path, budget) == ("s", 1.0)
    assert by == pytest.approx(0.5)
    assert rec.of(ShutdownReport) == [report]
    (stopped,) = rec.of(SupervisorStopped)
    assert stopped.time == pytest.approx(13.5)


async def test_a_child_can_run_one_nested_supervisor_after_another(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _finish 39 (the parent's subtree left "" instead of None): the second supervisor
    # a child runs is nested in the tree too.
    paths: list[str] = []

    async def probe(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        paths.append(current_child().path)
        task_status.started()
        await trio.sleep_forever()

    async def twice(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for _ in range(2):
            with trio.move_on_after(1):
                await Supervisor([ChildSpec("x", probe)]).run()
        task_status.started()
        await trio.sleep_forever()

    async with open_supervisor([ChildSpec("t", twice)]) as sup:
        await until(sup, lambda: sup.which_children()[0].state is ChildState.RUNNING)
    assert paths == ["t/x", "t/x"]


async def test_child_started_events_count_the_incarnations(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _on_ready 15 (the incarnation), _child_main 24 (a restart that fails before it is
    # ready is a ChildStartFailed, not an exit with no reason).
    ctl = Controlled()
    rec = Recorder()
    async with open_supervisor(
        [ChildSpec("a", ctl, args=("a",))], backoff=None, max_restarts=5, on_event=rec
    ) as sup:
        ctl.crash("a")
        await until(sup, lambda: ctl.starts["a"] == 2)
        ctl.fail_start["a"] = 1
        await trio.testing.wait_all_tasks_blocked()
        ctl.crash("a")
        await until(sup, lambda: ctl.starts["a"] == 4)
    assert [(e.child, e.incarnation) for e in rec.of(ChildStarted)] == [
        ("a", 1),
        ("a", 2),
        ("a", 4),
    ]
    (failed,) = rec.of(ChildStartFailed)
    assert (failed.child, str(failed.exception)) == ("a", "a cannot start")
    reasons = [e.reason for e in rec.of(ChildExited)]
    assert None not in reasons
    assert reasons[:2] == [ExitReason.EXCEPTION, ExitReason.EXCEPTION]


async def test_a_restart_stopped_by_another_caller_names_its_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _preempted 3, 5: the ChildStartError of a restart someone else stopped.
    runs = 0

    async def slow(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        if runs > 1:
            await trio.sleep(10)
        task_status.started()
        await trio.sleep_forever()

    async with open_supervisor([ChildSpec("a", slow)]) as sup, trio.open_nursery() as nursery:

        async def restart() -> None:
            with pytest.raises(ChildStartError) as info:
                await sup.restart_child("a")
            assert info.value.child == "a"

        nursery.start_soon(restart)
        await until(sup, lambda: runs == 2)
        await sup.terminate_child("a")


async def test_a_restart_its_caller_gave_up_on_is_stopped_before_it_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _await_start 3 (the stop not shielded from the caller's cancellation): the caller
    # gets control back once the start is stopped, and the child is then TERMINATED.
    runs = 0

    async def slow(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        try:
            if runs > 1:
                await trio.sleep(10)
            task_status.started()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1)

    async with open_supervisor([ChildSpec("a", slow, shutdown=5.0)]) as sup:
        await trio.sleep(1)  # 1
        with trio.move_on_after(3):  # the old incarnation's stop takes until 2
            await sup.restart_child("a")
        assert trio.current_time() == pytest.approx(5.0)  # the new start's stop: 4 to 5
        (info,) = sup.which_children()
        assert info.state is ChildState.TERMINATED


async def test_the_backoff_sequence_resets_after_a_long_run_but_not_after_failed_starts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _fail 50 (a run of exactly reset_after resets the sequence), 86 (the attempt in
    # ChildRestarting), _handle_exit 22 and _expire_starts 30 (a failed or timed-out start
    # does not reset it, however long ago the last ready incarnation started),
    # _expire_starts 24 (the timeout is the child's last error).
    runs = 0

    async def a(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            raise Boom("no start")
        if runs == 4:
            await trio.sleep_forever()  # times out at 13 + 3
        task_status.started()
        if runs in (1, 2):
            await trio.sleep(1 if runs == 1 else 8)
            raise Boom(f"run {runs}")
        await trio.sleep_forever()

    rec = Recorder()
    backoff = Backoff(initial=1.0, maximum=8.0, multiplier=2.0, jitter=0.0, reset_after=8.0)
    async with open_supervisor(
        [ChildSpec("a", a, start_timeout=3.0)], backoff=backoff, max_restarts=10, on_event=rec
    ) as sup:
        await until(sup, lambda: runs == 4)
        await trio.sleep(3.5)  # 16.5: the fourth start timed out at 16
        (info,) = sup.which_children()
        assert isinstance(info.last_error, TimeoutError)
        await until(sup, lambda: runs == 5)
        assert trio.current_time() == pytest.approx(20.0)
    restarts = [(e.time, e.delay, e.attempt) for e in rec.of(ChildRestarting)]
    assert restarts == [(1.0, 1.0, 0), (10.0, 1.0, 0), (11.0, 2.0, 1), (16.0, 4.0, 2)]
    failed = [(e.time, type(e.exception)) for e in rec.of(ChildStartFailed)]
    assert failed == [(11.0, Boom), (16.0, TimeoutError)]


async def test_a_restart_that_returns_before_ready_is_a_start_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _handle_exit 13, 14, 15, 16 (the RuntimeError made for a start that returned).
    runs = 0

    async def a(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            return
        task_status.started()
        if runs == 1:
            await trio.sleep(1)
            raise Boom("crash")
        await trio.sleep_forever()

    rec = Recorder()
    async with open_supervisor([ChildSpec("a", a)], backoff=None, on_event=rec) as sup:
        await until(sup, lambda: runs == 3)
        (info,) = sup.which_children()
        assert isinstance(info.last_error, RuntimeError)
        assert "a" in str(info.last_error)
    (failed,) = rec.of(ChildStartFailed)
    assert isinstance(failed.exception, RuntimeError)


@pytest.mark.parametrize("how", ["raises", "hangs"])
async def test_a_restart_that_fails_its_start_escalates_with_that_failure_as_cause(
    autojump_clock: trio.testing.MockClock, how: str
) -> None:
    # _handle_exit 23 (raises: the escalation's cause), _expire_starts 31 (hangs: the
    # TimeoutError is the cause).
    runs = 0

    async def a(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            if how == "raises":
                raise Boom("no start")
            await trio.sleep_forever()
        task_status.started()
        await trio.sleep(1)
        raise Boom("crash")

    with pytest.raises(RestartIntensityExceeded) as info:
        async with open_supervisor(
            [ChildSpec("a", a, start_timeout=2.0)], backoff=None, max_restarts=1
        ):
            await trio.sleep_forever()
    cause = info.value.__cause__
    if how == "raises":
        assert isinstance(cause, Boom)
        assert str(cause) == "no start"
    else:
        assert isinstance(cause, TimeoutError)


async def test_an_exit_handled_during_the_backoff_is_not_reported_again_by_a_terminate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _handle_exit 7, 8 (claimed left unset): terminate_child during the backoff found the
    # handled exit "still queued" and reported it a second time.
    ctl = Controlled()
    rec = Recorder()
    backoff = Backoff(initial=4.0, maximum=4.0, jitter=0.0)
    async with open_supervisor(
        [ChildSpec("a", ctl, args=("a",))], backoff=backoff, on_event=rec
    ) as sup:
        ctl.crash("a")
        await until(sup, lambda: sup.which_children()[0].state is ChildState.RESTARTING)
        await trio.sleep(1)
        await sup.terminate_child("a")
        await trio.sleep(10)
        assert ctl.starts["a"] == 1
    exits = [(e.child, e.reason, e.will_restart) for e in rec.of(ChildExited)]
    assert exits == [("a", ExitReason.EXCEPTION, True)]


async def test_a_temporary_child_that_crashes_is_reported_once_and_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _handle_exit 38, 39, 40, 46: its ChildExited (reason, exception, will_restart False).
    ctl = Controlled()
    rec = Recorder()
    async with open_supervisor(
        [ChildSpec("t", ctl, args=("t",), restart=Restart.TEMPORARY)], on_event=rec
    ) as sup:
        ctl.crash("t")
        await until(sup, lambda: sup.which_children() == [])
    ((reason, exc, will_restart),) = [
        (e.reason, e.exception, e.will_restart) for e in rec.of(ChildExited)
    ]
    assert reason is ExitReason.EXCEPTION
    assert isinstance(exc, Boom)
    assert will_restart is False


async def test_an_expired_start_is_found_behind_a_waiting_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _expire_starts 15 (break): a restart still waiting its backoff, earlier in start
    # order, hid the later child's expired start until it left the queue.
    runs = {"a": 0, "b": 0}

    def child(name: str, crash_at: float) -> ChildSpec:
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            runs[name] += 1
            if runs[name] == 2 and name == "b":
                await trio.sleep_forever()  # never ready
            task_status.started()
            if runs[name] == 1:
                await trio.sleep(crash_at)
                raise Boom(f"{name} crashed")
            await trio.sleep_forever()

        return ChildSpec(name, run, start_timeout=2.0)

    rec = Recorder()
    backoff = Backoff(initial=5.0, maximum=5.0, jitter=0.0)
    async with open_supervisor(
        [child("a", 5.0), child("b", 1.0)], backoff=backoff, max_restarts=10, on_event=rec
    ) as sup:
        await until(sup, lambda: runs == {"a": 2, "b": 3})
    failed = [(e.child, e.time) for e in rec.of(ChildStartFailed)]
    assert failed == [("b", 8.0)]  # b restarted at 6, a waits until 10


async def test_restarts_carry_the_attempt_and_a_seeded_jitter_per_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _fail 67, 68 (the jitter drawn from the child's path and restart count), 107 (a
    # victim's ChildRestarting attempt).
    ctl = Controlled()
    rec = Recorder()
    backoff = Backoff(initial=1.0, maximum=8.0, jitter=0.5)
    async with open_supervisor(
        [ChildSpec("a", ctl, args=("a",)), ChildSpec("b", ctl, args=("b",))],
        strategy=Strategy.ONE_FOR_ALL,
        backoff=backoff,
        seed=7,
        max_restarts=10,
        on_event=rec,
    ) as sup:
        for n in (2, 3):
            ctl.crash("a")
            await until(sup, lambda: ctl.starts["b"] == n)  # noqa: B023
            await trio.testing.wait_all_tasks_blocked()
    restarts = [(e.child, e.delay, e.attempt) for e in rec.of(ChildRestarting)]
    first = backoff.delay(0, jitter_draw(7, "a", 0))
    second = backoff.delay(1, jitter_draw(7, "a", 1))
    assert restarts == [("a", first, 0), ("b", first, 0), ("a", second, 1), ("b", second, 1)]


async def test_a_victim_that_terminates_itself_does_not_stop_the_others_restarting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _fail 99 (break): the victims after one that terminated itself were not restarted.
    ctl = Controlled()

    async def b(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await current_child().supervisor.terminate_child("b")

    children = [
        ChildSpec("a", ctl, args=("a",)),
        ChildSpec("b", b),
        ChildSpec("c", ctl, args=("c",)),
    ]
    async with open_supervisor(children, strategy=Strategy.ONE_FOR_ALL, backoff=None) as sup:
        ctl.crash("a")
        await until(sup, lambda: ctl.starts.get("c") == 2)
        states = {i.id: i.state for i in sup.which_children()}
    assert states == {"a": ChildState.RUNNING, "b": ChildState.TERMINATED, "c": ChildState.RUNNING}


async def test_dependents_failing_while_their_dependency_waits_join_its_restart_wave(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _next_deadline 11 (the old incarnations' start deadlines, passed, made the loop
    # spin while the dependents waited), _fail 5, 7, 8, 17 (the dependents get the
    # dependency's wave: one starts after the other is ready), 12..15 (its restart time),
    # 22 (the attempt in ChildRestarting).
    runs = {"db": 0, "app1": 0, "app2": 0}
    starts: dict[str, list[float]] = {"app1": [], "app2": []}
    crash = trio.Event()

    async def db(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        runs["db"] += 1
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            if runs["db"] == 1:
                with trio.CancelScope(shield=True):
                    await trio.sleep(3)  # overstays its 1 s budget

    def app(name: str) -> ChildSpec:
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            runs[name] += 1
            starts[name].append(trio.current_time())
            if runs[name] == 2 and name == "app1":
                await trio.sleep(1)
            task_status.started()
            if runs[name] == 1:
                await crash.wait()
                raise Boom(f"{name} lost the db")
            await trio.sleep_forever()

        return ChildSpec(name, run, depends_on=("db",), start_timeout=1.5)

    rec = Recorder()
    children = [ChildSpec("db", db, shutdown=1.0), app("app1"), app("app2")]
    async with open_supervisor(children, max_restarts=0, on_event=rec) as sup:
        await trio.sleep(1)
        with pytest.raises(ChildStartError):
            await sup.restart_child("db")  # 2: it overstays; it restarts when it ends (4)
        await trio.sleep(0.5)
        crash.set()
        await until(sup, lambda: runs["app2"] == 2)
    assert starts == {"app1": [0.0, 4.0], "app2": [0.0, 5.0]}
    restarts = [(e.child, e.delay, e.attempt, e.cause) for e in rec.of(ChildRestarting)]
    assert restarts == [("db", 0.0, 0, "db"), ("app1", 0.0, 0, "db"), ("app2", 0.0, 0, "db")]


async def test_a_victim_whose_restart_failed_at_the_same_instant_is_reported_as_such(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _claim 12..19: a's failure claims b, whose loop restart failed before it was ready
    # at the same instant: b's ChildStartFailed (its exception) and last error.
    runs = {"a": 0, "b": 0}

    def child(name: str) -> ChildSpec:
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            runs[name] += 1
            if name == "b" and runs[name] == 2:
                await trio.sleep(1)
                raise Boom("b cannot start")
            task_status.started()
            if (runs[name] == 1 and name == "b") or (runs[name] == 2 and name == "a"):
                await trio.sleep(1)
                raise Boom(f"{name} crashed")
            await trio.sleep_forever()

        return ChildSpec(name, run)

    rec = Recorder()
    async with open_supervisor(
        [child("a"), child("b")],
        strategy=Strategy.ONE_FOR_ALL,
        backoff=None,
        max_restarts=10,
        on_event=rec,
    ) as sup:
        await until(sup, lambda: runs == {"a": 3, "b": 3})
        errors = {i.id: str(i.last_error) for i in sup.which_children()}
    failed = [(e.child, e.time, str(e.exception)) for e in rec.of(ChildStartFailed)]
    assert failed == [("b", 2.0, "b cannot start")]
    assert errors == {"a": "a crashed", "b": "b cannot start"}
    crashes = [(e.child, e.time) for e in rec.of(ChildExited) if e.exception is not None]
    assert crashes == [("b", 1.0), ("a", 2.0)]


async def test_a_victim_waiting_out_its_backoff_is_not_reported_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _claim 2 (a claimed exit claimed again): b's exit, handled, is not reported again
    # when a's failure takes b as a victim during b's backoff.
    ctl = Controlled()
    rec = Recorder()
    backoff = Backoff(initial=4.0, maximum=4.0, jitter=0.0)
    async with open_supervisor(
        [ChildSpec("a", ctl, args=("a",)), ChildSpec("b", ctl, args=("b",))],
        strategy=Strategy.REST_FOR_ONE,
        backoff=backoff,
        max_restarts=10,
        on_event=rec,
    ) as sup:
        ctl.crash("b")
        await until(sup, lambda: sup.which_children()[1].state is ChildState.RESTARTING)
        await trio.sleep(1)
        ctl.crash("a")
        await until(sup, lambda: ctl.starts == {"a": 2, "b": 2})
    exits = [(e.child, e.reason) for e in rec.of(ChildExited)]
    assert exits[:2] == [("b", ExitReason.EXCEPTION), ("a", ExitReason.EXCEPTION)]
    assert ("b", ExitReason.EXCEPTION) not in exits[2:]


async def test_a_crash_queued_behind_a_terminate_is_reported_and_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _claim_as_unhandled 1, 2, 6, 7, 8, 10, 11, 12: terminate_child("a") waits for the
    # lock (another child's slow stop holds it); a crashes meanwhile; the terminate then
    # reports that crash (not restarted) and the loop, next in line, leaves it alone.
    ctl = Controlled()

    async def slow(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1.5)

    rec = Recorder()
    children = [ChildSpec("a", ctl, args=("a",)), ChildSpec("slow", slow, shutdown=5.0)]
    async with open_supervisor(children, backoff=None, on_event=rec) as sup:
        async with trio.open_nursery() as nursery:
            await trio.sleep(0.5)
            nursery.start_soon(sup.terminate_child, "slow")  # holds the lock until 2
            await trio.sleep(0.25)
            nursery.start_soon(sup.terminate_child, "a")
            await trio.sleep(0.25)
            ctl.crash("a")  # at 1
        await trio.sleep(5)
        states = {i.id: i.state for i in sup.which_children()}
        assert states == {"a": ChildState.TERMINATED, "slow": ChildState.TERMINATED}
        assert ctl.starts["a"] == 1
    exits = [(e.child, e.reason, type(e.exception), e.will_restart) for e in rec.of(ChildExited)]
    assert ("a", ExitReason.EXCEPTION, Boom, False) in exits
    assert [e for e in exits if e[0] == "a"] == [("a", ExitReason.EXCEPTION, Boom, False)]


async def test_a_self_restart_event_carries_the_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _after_self_stop 11 (the attempt None in ChildRestarting).
    runs = 0

    async def again(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs == 1:
            await current_child().supervisor.restart_child("a")
        await trio.sleep_forever()

    rec = Recorder()
    async with open_supervisor([ChildSpec("a", again)], on_event=rec) as sup:
        await until(sup, lambda: runs == 2)
    assert [(e.child, e.attempt) for e in rec.of(ChildRestarting)] == [("a", 0)]


class Script:
    """Children that crash, start slowly or overstay their stop at set times, per
    incarnation (1 = the first), and record when each incarnation started."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}
        self.starts: dict[str, list[float]] = {}

    def spec(
        self,
        name: str,
        *,
        crash_after: dict[int, float] | None = None,
        start_delay: dict[int, float] | None = None,
        stop_delay: dict[int, float] | None = None,
        **options: Any,
    ) -> ChildSpec:
        crash_after = crash_after or {}
        start_delay = start_delay or {}
        stop_delay = stop_delay or {}

        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            n = self.runs[name] = self.runs.get(name, 0) + 1
            self.starts.setdefault(name, []).append(trio.current_time())
            if n in start_delay:
                await trio.sleep(start_delay[n])
            task_status.started()
            if n in crash_after:
                await trio.sleep(crash_after[n])
                raise Boom(f"{name} crashed")
            try:
                await trio.sleep_forever()
            finally:
                if n in stop_delay:
                    with trio.CancelScope(shield=True):
                        await trio.sleep(stop_delay[n])

        return ChildSpec(name, run, **options)


async def test_a_shutdown_during_a_batch_reports_its_rest_and_later_exits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _process 9 (the rest of the batch put back as None), 10 (put back over the exit that
    # arrived meanwhile): a and b die at 1, a's dependent d takes until 2 to stop, e dies
    # at 1.25, shutdown is asked at 1.5: b and e are reported, not restarted.
    s = Script()
    children = [
        s.spec("a", crash_after={1: 1.0}),
        s.spec("d", stop_delay={1: 1.0}, depends_on=("a",), shutdown=5.0),
        s.spec("b", crash_after={1: 1.0}),
        s.spec("e", crash_after={1: 1.25}),
    ]
    rec = Recorder()
    async with open_supervisor(children, backoff=None, max_restarts=10, on_event=rec) as sup:
        await trio.sleep(1.5)
        sup.shutdown_nowait()
    exits = [(e.child, e.will_restart) for e in rec.of(ChildExited) if e.exception is not None]
    assert ("b", False) in exits
    assert ("e", False) in exits
    assert s.runs["b"] == 1
    assert s.runs["e"] == 1


async def test_an_escalation_during_a_batch_reports_its_rest_and_later_exits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _process 20 (put back over the exit that arrived meanwhile), 22 (the exit after the
    # escalating one dropped): a, b and f die at 1, e at 1.25 while a's dependent stops;
    # b's failure escalates; f and e are reported.
    s = Script()
    children = [
        s.spec("a", crash_after={1: 1.0}),
        s.spec("d", stop_delay={1: 1.0}, depends_on=("a",), shutdown=5.0),
        s.spec("b", crash_after={1: 1.0}),
        s.spec("f", crash_after={1: 1.0}),
        s.spec("e", crash_after={1: 1.25}),
    ]
    rec = Recorder()
    with pytest.raises(RestartIntensityExceeded) as info:
        async with open_supervisor(children, backoff=None, max_restarts=1, on_event=rec):
            await trio.sleep_forever()
    assert info.value.child == "b"
    exits = [(e.child, e.will_restart) for e in rec.of(ChildExited) if e.exception is not None]
    assert ("f", False) in exits
    assert ("e", False) in exits


async def test_a_due_restart_is_not_held_up_by_another_wave_still_starting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _launch_due 11 (break): a and its dependent a2 restart in one wave, a's start takes
    # until 6; b's restart, due at 2, starts at 2.
    s = Script()
    children = [
        s.spec("a", crash_after={1: 1.0}, start_delay={2: 5.0}),
        s.spec("a2", depends_on=("a",)),
        s.spec("b", crash_after={1: 2.0}),
    ]
    async with open_supervisor(children, backoff=None, max_restarts=10) as sup:
        await until(sup, lambda: s.runs == {"a": 2, "a2": 2, "b": 2})
    assert s.starts == {"a": [0.0, 1.0], "a2": [0.0, 6.0], "b": [0.0, 2.0]}


async def test_a_due_restart_is_not_held_up_by_an_overstaying_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _launch_due 20 (break): a's old incarnation overstays until 4; b's restart, due at
    # 2.5, starts at 2.5.
    s = Script()
    children = [s.spec("a", stop_delay={1: 3.0}, shutdown=1.0), s.spec("b", crash_after={1: 2.5})]
    async with open_supervisor(children, backoff=None, max_restarts=10) as sup:
        await trio.sleep(1)
        with pytest.raises(ChildStartError):
            await sup.restart_child("a")
        await until(sup, lambda: s.runs == {"a": 2, "b": 2})
    assert s.starts == {"a": [0.0, 4.0], "b": [0.0, 2.5]}


async def test_a_due_restart_is_not_held_up_by_one_waiting_for_its_dependency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _launch_due 23 (break): app waits for db's manual restart (ready at 6); c's restart,
    # due at 3, starts at 3.
    s = Script()
    children = [
        s.spec("db", start_delay={2: 5.0}),
        s.spec("app", crash_after={1: 2.0}, depends_on=("db",)),
        s.spec("c", crash_after={1: 3.0}),
    ]
    async with open_supervisor(children, backoff=None, max_restarts=10) as sup:
        async with trio.open_nursery() as nursery:
            await trio.sleep(1)
            nursery.start_soon(sup.restart_child, "db")
        await until(sup, lambda: s.runs == {"db": 2, "app": 2, "c": 2})
    assert s.starts == {"db": [0.0, 1.0], "app": [0.0, 6.0], "c": [0.0, 3.0]}


async def test_a_dependent_restarts_when_its_dependency_stopped_for_good(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _blocking_dependency 8 (a stopped dependency with a finished task counted as down):
    # db, transient, returned normally; app's crash restarts it at once.
    returned = trio.Event()

    async def db(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await returned.wait()

    s = Script()
    children = [
        ChildSpec("db", db, restart=Restart.TRANSIENT),
        s.spec("app", crash_after={1: 2.0}, depends_on=("db",)),
    ]
    async with open_supervisor(children, backoff=None) as sup:
        returned.set()
        await until(sup, lambda: s.runs["app"] == 2)
        assert sup.which_children()[0].state is ChildState.STOPPED
    assert s.starts["app"] == [0.0, 2.0]


async def test_a_manual_restart_that_fails_keeps_why_as_the_last_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _await_start 19 (the RuntimeError for a start that returned), 22 (the last error).
    s = Script()
    runs = 0

    async def quits(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            task_status.started()
            await trio.sleep_forever()

    async with open_supervisor([ChildSpec("q", quits), s.spec("w")]) as sup:
        with pytest.raises(ChildStartError) as info:
            await sup.restart_child("q")
        assert isinstance(info.value.__cause__, RuntimeError)
        assert "'q'" in str(info.value.__cause__)
        last = sup.which_children()[0].last_error
        assert last is info.value.__cause__


async def test_a_supervisor_cancelled_from_outside_still_reports_an_overstay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # _note_overstay 1, 2 (its wait not shielded): the supervisor's scope is cancelled;
    # the child that overstays its stop is still in the report.
    s = Script()
    sup = None
    with trio.move_on_after(1):
        async with open_supervisor([s.spec("slow", stop_delay={1: 1.5}, shutdown=1.0)]) as sup:
            await trio.sleep_forever()
    assert sup is not None
    report = sup.shutdown_report
    assert report is not None
    assert [(o.path, o.budget) for o in report.overstayed] == [("slow", 1.0)]
