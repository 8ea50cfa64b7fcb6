"""Strategies, restart types and depends_on, all under the autojump clock."""

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
    ChildState,
    ExitReason,
    Restart,
    Strategy,
    open_supervisor,
)

from ._helpers import Boom, Controlled, Recorder, until


def specs(ctl: Controlled, *names: str, **options: object) -> list[ChildSpec]:
    return [ChildSpec(n, ctl, args=(n,), **options) for n in names]  # type: ignore[arg-type]


async def test_start_order_is_list_order_and_values_are_returned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    async with open_supervisor(specs(ctl, "a", "b", "c")) as sup:
        assert ctl.log == ["start a", "start b", "start c"]
        assert [i.state for i in sup.which_children()] == [ChildState.RUNNING] * 3
        value = await sup.start_child(ChildSpec("d", ctl, args=("d",)))
        assert value == "d"
    assert ctl.log[4:] == ["stop d", "stop c", "stop b", "stop a"]


async def test_one_for_one_restarts_only_the_failed_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    async with open_supervisor(specs(ctl, "a", "b", "c")) as sup:
        ctl.log.clear()
        ctl.crash("b")
        await until(sup, lambda: ctl.starts["b"] == 2)
        assert ctl.log == ["stop b", "start b"]
        assert [i.restarts for i in sup.which_children()] == [0, 1, 0]


async def test_one_for_all_restarts_everyone_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    async with open_supervisor(specs(ctl, "a", "b", "c"), strategy=Strategy.ONE_FOR_ALL) as sup:
        ctl.log.clear()
        ctl.crash("b")
        await until(sup, lambda: ctl.starts["a"] == 2 and ctl.starts["c"] == 2)
        assert ctl.log == ["stop b", "stop c", "stop a", "start a", "start b", "start c"]


async def test_rest_for_one_restarts_the_failed_and_later_children(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    async with open_supervisor(
        specs(ctl, "a", "b", "c", "d"), strategy=Strategy.REST_FOR_ONE
    ) as sup:
        ctl.log.clear()
        ctl.crash("b")
        await until(sup, lambda: ctl.starts["d"] == 2)
        assert ctl.log == ["stop b", "stop d", "stop c", "start b", "start c", "start d"]
        assert ctl.starts["a"] == 1


async def test_depends_on_cascade_stops_dependents_first_and_counts_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    children = [
        ChildSpec("db", ctl, args=("db",)),
        ChildSpec("repo", ctl, args=("repo",), depends_on=("db",)),
        ChildSpec("api", ctl, args=("api",), depends_on=("repo",)),
        ChildSpec("other", ctl, args=("other",)),
    ]
    rec = Recorder()
    # max_restarts=1: if victims counted, a single db failure (3 restarts) would escalate.
    async with open_supervisor(children, max_restarts=1, max_seconds=60) as sup:
        sup.subscribe(rec)
        ctl.log.clear()
        ctl.crash("db")
        await until(sup, lambda: ctl.starts["api"] == 2)
        assert ctl.log == [
            "stop db",
            "stop api",
            "stop repo",
            "start db",
            "start repo",
            "start api",
        ]
        assert ctl.starts["other"] == 1
        causes = {e.child: e.cause for e in rec.of(ChildRestarting)}
        assert causes == {"db": "db", "repo": "db", "api": "db"}
        assert len(sup._restart_times) == 1


async def test_dependent_crashing_with_its_dependency_is_not_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    children = [
        ChildSpec("db", ctl, args=("db",)),
        ChildSpec("repo", ctl, args=("repo",), depends_on=("db",)),
    ]
    async with open_supervisor(children, max_restarts=1, max_seconds=60) as sup:
        ctl.crash("repo")  # both die "at once": repo's exit is queued before db's
        ctl.crash("db")
        await until(sup, lambda: ctl.starts["repo"] == 2 and ctl.starts["db"] == 2)
        assert len(sup._restart_times) == 1


async def test_permanent_normal_return_is_restarted_and_reported(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    runs = 0

    async def once(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs == 1:
            return
        await trio.sleep_forever()

    rec = Recorder()
    async with open_supervisor([ChildSpec("p", once)], on_event=rec) as sup:
        await until(sup, lambda: runs == 2)
    exited = rec.of(ChildExited)
    assert exited[0].reason is ExitReason.NORMAL
    assert exited[0].will_restart is True
    assert "permanent child 'p' returned normally; restarting it" in caplog.text


async def test_transient_and_temporary(autojump_clock: trio.testing.MockClock) -> None:
    ctl = Controlled()
    done = trio.Event()

    async def returns(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await done.wait()

    children = [
        ChildSpec("t-crash", ctl, args=("t-crash",), restart=Restart.TRANSIENT),
        ChildSpec("t-normal", returns, restart=Restart.TRANSIENT),
        ChildSpec("tmp", ctl, args=("tmp",), restart=Restart.TEMPORARY),
    ]
    async with open_supervisor(children) as sup:
        ctl.crash("t-crash")
        ctl.crash("tmp")
        done.set()
        await until(sup, lambda: ctl.starts["t-crash"] == 2)
        await until(sup, lambda: len(sup.which_children()) == 2)
        states = {i.id: i.state for i in sup.which_children()}
        assert states == {"t-crash": ChildState.RUNNING, "t-normal": ChildState.STOPPED}
        assert ctl.starts["tmp"] == 1


async def test_child_without_task_status_is_ready_when_scheduled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen = trio.Event()

    async def plain() -> None:
        seen.set()
        await trio.sleep_forever()

    async with open_supervisor([ChildSpec("plain", plain)]) as sup:
        await seen.wait()
        assert sup.which_children()[0].state is ChildState.RUNNING


async def test_exit_reasons_and_errors_are_recorded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    rec = Recorder()
    async with open_supervisor(specs(ctl, "a")) as sup:
        sup.subscribe(rec)
        ctl.crash("a")
        await until(sup, lambda: ctl.starts["a"] == 2)
        info = sup.which_children()[0]
        assert isinstance(info.last_error, Boom)
        assert info.restarts == 1
    exits = rec.of(ChildExited)
    assert exits[0].reason is ExitReason.EXCEPTION
    assert isinstance(exits[0].exception, Boom)
    assert exits[-1].reason is ExitReason.SHUTDOWN


@pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
async def test_a_siblings_failure_drops_temporary_children_and_restarts_transient_ones(
    strategy: Strategy, autojump_clock: trio.testing.MockClock
) -> None:
    # Bug 4: TEMPORARY children were restarted with their siblings (OTP drops them).
    ctl = Controlled()
    rec = Recorder()
    children = [
        ChildSpec("a", ctl, args=("a",)),
        ChildSpec("tmp", ctl, args=("tmp",), restart=Restart.TEMPORARY),
        ChildSpec("trans", ctl, args=("trans",), restart=Restart.TRANSIENT),
    ]
    async with open_supervisor(children, strategy=strategy, on_event=rec) as sup:
        ctl.crash("a")
        await until(sup, lambda: ctl.starts["a"] == 2 and ctl.starts["trans"] == 2)
        await trio.testing.wait_all_tasks_blocked()
        assert [i.id for i in sup.which_children()] == ["a", "trans"]
        assert ctl.starts["tmp"] == 1
    tmp_exit = next(e for e in rec.of(ChildExited) if e.child == "tmp")
    assert (tmp_exit.reason, tmp_exit.will_restart) == (ExitReason.SHUTDOWN, False)
    assert "tmp" not in {e.child for e in rec.of(ChildRestarting)}


async def test_one_for_all_waits_out_the_backoff_then_starts_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Issue 28's mutant "ONE_FOR_ALL siblings restarted at once, skipping the backoff".
    ctl = Controlled()
    rec = Recorder()
    backoff = Backoff(initial=2.0, maximum=8.0, multiplier=2.0, jitter=0.0)
    async with open_supervisor(
        specs(ctl, "a", "b", "c"), strategy=Strategy.ONE_FOR_ALL, backoff=backoff, on_event=rec
    ) as sup:
        for attempt, delay in enumerate([2.0, 4.0]):
            rec.events.clear()
            ctl.log.clear()
            t0 = trio.current_time()
            ctl.crash("b")
            await until(sup, lambda a=attempt: all(ctl.starts[n] == a + 2 for n in "abc"))  # type: ignore[misc]
            started = [(e.child, e.time - t0) for e in rec.of(ChildStarted)]
            assert started == [("a", delay), ("b", delay), ("c", delay)]
            assert [(e.child, e.delay, e.cause) for e in rec.of(ChildRestarting)] == [
                ("b", delay, "b"),
                ("a", delay, "b"),
                ("c", delay, "b"),
            ]
            assert ctl.log == ["stop b", "stop c", "stop a", "start a", "start b", "start c"]
