"""Readiness, start failures, manual child operations, events, health, components."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import supervisors
from supervisors import (
    Actor,
    ChildExited,
    ChildNotFound,
    ChildSpec,
    ChildStarted,
    ChildStartError,
    ChildStartFailed,
    ChildState,
    Event,
    Health,
    HealthChanged,
    RestartIntensityExceeded,
    Supervisor,
    SupervisorError,
    SupervisorStopped,
    actor_spec,
    component_spec,
    open_supervisor,
    supervisor_spec,
    whereis,
)
from supervisors._spec import DEFAULT_START_TIMEOUT

from ._helpers import Boom, Controlled, Recorder, until


async def test_start_order_is_readiness_order(autojump_clock: trio.testing.MockClock) -> None:
    ready: list[str] = []

    async def slow_ready(
        name: str, delay: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await trio.sleep(delay)
        ready.append(name)
        task_status.started()
        await trio.sleep_forever()

    children = [
        ChildSpec("slow", slow_ready, args=("slow", 5.0)),
        ChildSpec("fast", slow_ready, args=("fast", 0.1)),
    ]
    async with open_supervisor(children):
        assert ready == ["slow", "fast"]  # "fast" was not even started before "slow" was ready


async def test_initial_start_failure_names_the_child_and_stops_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    ctl.fail_start["b"] = 1
    rec = Recorder()
    with pytest.raises(
        ChildStartError, match=r"child 'b' failed to start: Boom: b cannot start"
    ) as info:
        async with open_supervisor([ChildSpec(n, ctl, args=(n,)) for n in "abc"], on_event=rec):
            pytest.fail("the body must not run")
    assert info.value.child == "b"
    assert isinstance(info.value.__cause__, Boom)
    assert ctl.log == ["start a", "stop a"]
    assert [e.child for e in rec.of(ChildStartFailed)] == ["b"]
    assert rec.of(SupervisorStopped)[0].reason == "start failed"


async def test_returning_before_ready_is_a_start_failure() -> None:
    async def quitter(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        return

    with pytest.raises(ChildStartError, match=r"returned before calling task_status\.started"):
        async with open_supervisor([ChildSpec("q", quitter)]):
            pass


async def test_start_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async def never(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep_forever()

    with pytest.raises(ChildStartError, match="did not become ready within 3s"):
        async with open_supervisor([ChildSpec("n", never, start_timeout=3)]):
            pass


async def test_restart_start_failures_are_retried_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    async with open_supervisor([ChildSpec("a", ctl, args=("a",))], max_restarts=5) as sup:
        ctl.fail_start["a"] = 2
        ctl.crash("a")
        await until(sup, lambda: ctl.starts["a"] == 4)
        await until(sup, lambda: sup.which_children()[0].state is ChildState.RUNNING)
        assert len(sup._restart_times) == 3  # the crash and two failed restarts


async def test_start_child_failure_is_typed_and_leaves_no_spec(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    ctl.fail_start["x"] = 1
    async with open_supervisor() as sup:
        with pytest.raises(ChildStartError) as info:
            await sup.start_child(ChildSpec("x", ctl, args=("x",)))
        assert isinstance(info.value.__cause__, Boom)
        assert sup.which_children() == []
        with pytest.raises(ValueError, match="unknown child 'nope'"):
            await sup.start_child(ChildSpec("y", ctl, args=("y",), depends_on=("nope",)))


async def test_terminate_restart_delete(autojump_clock: trio.testing.MockClock) -> None:
    ctl = Controlled()
    async with open_supervisor() as sup:
        assert await sup.start_child(ChildSpec("c", ctl, args=("c",))) == "c"
        assert await sup.restart_child("c") == "c"
        assert ctl.log == ["start c", "stop c", "start c"]
        with pytest.raises(SupervisorError, match="terminate_child"):
            sup.delete_child("c")
        await sup.terminate_child("c")
        assert sup.which_children()[0].state is ChildState.TERMINATED
        assert sup.count_children().active == 0
        sup.delete_child("c")
        assert sup.which_children() == []
        with pytest.raises(ChildNotFound):
            await sup.terminate_child("c")
        await sup.start_child(ChildSpec("d", ctl, args=("d",)))
        with pytest.raises(ValueError, match="duplicate child id 'd'"):
            await sup.start_child(ChildSpec("d", ctl, args=("d",)))


async def test_delete_refuses_a_dependency(autojump_clock: trio.testing.MockClock) -> None:
    ctl = Controlled()
    children = [
        ChildSpec("db", ctl, args=("db",)),
        ChildSpec("app", ctl, args=("app",), depends_on=("db",)),
    ]
    async with open_supervisor(children) as sup:
        await sup.terminate_child("db")
        with pytest.raises(ValueError, match="app depend on it"):
            sup.delete_child("db")


async def test_count_children(autojump_clock: trio.testing.MockClock) -> None:
    ctl = Controlled()
    children = [
        ChildSpec("w", ctl, args=("w",)),
        supervisor_spec("s", [ChildSpec("x", ctl, args=("x",))]),
    ]
    async with open_supervisor(children) as sup:
        counts = sup.count_children()
    assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (2, 2, 1, 1)


async def test_events_async_iterator_sees_the_subtree(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    seen: list[Event] = []
    children = [supervisor_spec("inner", [ChildSpec("leaf", ctl, args=("leaf",))])]
    async with open_supervisor(children) as sup:
        stream = sup.events()
        ctl.crash("leaf")
        async for event in stream:
            seen.append(event)
            if isinstance(event, ChildStarted):
                break
    crash = next(e for e in seen if isinstance(e, ChildExited))
    assert crash.path == "inner/leaf"
    assert crash.supervisor == "inner"
    assert isinstance(crash.exception, Boom)


async def test_event_stream_ends_when_the_supervisor_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_supervisor() as sup:
        stream = sup.events()
    assert [type(e).__name__ async for e in stream] == ["ShutdownReport", "SupervisorStopped"]


async def test_slow_event_reader_drops_and_counts(autojump_clock: trio.testing.MockClock) -> None:
    ctl = Controlled()
    async with open_supervisor([ChildSpec("a", ctl, args=("a",))], max_restarts=100) as sup:
        stream = sup.events(buffer=2)
        for n in range(3):
            ctl.crash("a")
            await until(sup, lambda n=n: ctl.starts["a"] == n + 2)  # type: ignore[misc]
    assert stream.dropped > 0


async def test_a_failing_subscriber_does_not_break_the_tree(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    def bad(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    ctl = Controlled()
    async with open_supervisor([ChildSpec("a", ctl, args=("a",))], on_event=bad):
        pass
    assert "subscriber" in caplog.text


async def test_health_aggregates_readiness_with_reasons(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = trio.Event()

    async def sick(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        supervisors.set_health(Health.DEGRADED, "replica lagging")
        await gate.wait()
        supervisors.set_health(Health.FAILED, "primary unreachable")
        await trio.sleep_forever()

    rec = Recorder()
    children = [supervisor_spec("db", [ChildSpec("pool", sick)])]
    async with open_supervisor(children, on_event=rec) as sup:
        report = sup.health()
        assert report.live
        assert report.ready
        assert report.reasons == ("db/pool: degraded (replica lagging)",)
        gate.set()
        await until(sup, lambda: not sup.health().ready)
        assert sup.health().reasons == ("db/pool: failed (primary unreachable)",)
    assert [e.status for e in rec.of(HealthChanged)] == [Health.DEGRADED, Health.FAILED]


async def test_insignificant_children_do_not_spoil_readiness(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    backoff = supervisors.Backoff(initial=10, maximum=10, jitter=0)
    children = [
        ChildSpec("side", ctl, args=("side",), significant=False),
        ChildSpec("main", ctl, args=("main",)),
    ]
    async with open_supervisor(children, backoff=backoff) as sup:
        ctl.crash("side")
        await until(sup, lambda: sup.which_children()[0].state is ChildState.RESTARTING)
        report = sup.health()
        assert report.ready
        assert report.reasons == ("side: restarting",)
        ctl.crash("main")
        await until(sup, lambda: not sup.health().ready)


class Pinger:
    """A Component in the Go original's shape."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.healthy = True

    async def init(self, config: Any) -> None:
        self.log.append(f"init {config['url']}")

    async def start(self) -> None:
        self.log.append("start")

    async def stop(self) -> None:
        self.log.append("stop")

    async def health(self) -> Health | None:
        if not self.healthy:
            raise ConnectionError("ping failed")
        return None


class PingerFactory:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.made: list[Pinger] = []

    def create(self, config: Any) -> Pinger:
        pinger = Pinger(self.log)
        self.made.append(pinger)
        return pinger


async def test_component_lifecycle_and_health_polling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    factory = PingerFactory(log)
    async with open_supervisor() as sup:
        comp = await sup.start_child(
            component_spec("p", factory, {"url": "x"}, health_interval=1.0)
        )
        assert comp is factory.made[0]
        assert log == ["init x", "start"]
        comp.healthy = False
        await until(sup, lambda: not sup.health().ready)  # at the next poll
        assert sup.health().reasons == ("p: failed (ConnectionError: ping failed)",)
        assert not sup.health().ready
        await sup.restart_child("p")
        assert len(factory.made) == 2  # a factory makes a fresh component per incarnation
    assert log == ["init x", "start", "stop", "init x", "start", "stop"]


def test_component_spec_refuses_other_objects() -> None:
    with pytest.raises(TypeError, match="expected a Component"):
        component_spec("x", object(), None)  # type: ignore[arg-type]


async def test_child_calling_its_own_supervisor_before_ready_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def greedy(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sup = supervisors.current_child().supervisor
        await sup.start_child(ChildSpec("other", greedy))

    with pytest.raises(ChildStartError) as info:
        async with open_supervisor([ChildSpec("g", greedy)]):
            pass
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "would wait for itself" in str(info.value.__cause__)


async def test_set_health_outside_a_child_is_a_no_op(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    rec = Recorder()
    async with open_supervisor([ChildSpec("a", ctl, args=("a",))], on_event=rec) as sup:
        # In the block, but not inside a child: neither changes anything nor raises.
        supervisors.set_health(Health.FAILED, "not in a tree")
        supervisors.progress()
        assert sup.health().ready
        assert sup.which_children()[0].health is Health.OK
        with pytest.raises(RuntimeError, match="not running inside a supervised child"):
            supervisors.current_child()
    assert rec.of(HealthChanged) == []


class Echo(Actor):
    async def handle_call(self, request: Any) -> Any:
        return request


async def test_a_child_started_from_outside_the_tree_sees_its_tree(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 5: the child inherited the caller's context, so whereis() failed in it.
    found: list[str] = []

    async def looker(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        found.append(await whereis("echo").call("hi"))
        task_status.started()
        await trio.sleep_forever()

    sup = Supervisor([actor_spec("echo", Echo)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await sup.start_child(ChildSpec("looker", looker))  # from no tree at all
        # ... and from a child of another tree
        async with open_supervisor([ChildSpec("caller", Caller(sup, looker))]):
            pass
        sup.shutdown_nowait()
    assert found == ["hi", "hi"]


class Caller:
    def __init__(self, sup: Supervisor, target: Any) -> None:
        self.sup = sup
        self.target = target

    async def __call__(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self.sup.start_child(ChildSpec("looker-2", self.target))
        task_status.started()
        await trio.sleep_forever()


async def test_a_slow_reader_loses_the_oldest_events_and_gets_the_last(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 6: the stream dropped the newest events, the final SupervisorStopped among them.
    ctl = Controlled()
    rec = Recorder()
    async with open_supervisor(
        [ChildSpec("a", ctl, args=("a",))], max_restarts=100, backoff=None
    ) as sup:
        stream = sup.events(buffer=3)
        sup.subscribe(rec)
        for n in range(3):
            ctl.crash("a")
            await until(sup, lambda n=n: ctl.starts["a"] == n + 2)  # type: ignore[misc]
    with trio.fail_after(5):
        events = [e async for e in stream]
    assert events == rec.events[-3:]
    assert type(events[-1]) is SupervisorStopped
    assert stream.dropped == len(rec.events) - 3


async def test_a_nested_supervisors_stream_ends_when_it_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 7: only a root's streams were closed, so this one never ended.
    ctl = Controlled()
    inner = Supervisor([ChildSpec("leaf", ctl, args=("leaf",))], name="inner")
    async with open_supervisor([ChildSpec("inner", inner.run, kind="supervisor")]):
        stream = inner.events()
    with trio.fail_after(5):
        names = [type(e).__name__ async for e in stream]
    assert names[-2:] == ["ShutdownReport", "SupervisorStopped"]


async def crash_now(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    raise Boom("always")


async def test_stop_reasons(autojump_clock: trio.testing.MockClock) -> None:
    ctl = Controlled()
    rec = Recorder()
    inner = supervisor_spec("inner", [ChildSpec("leaf", ctl, args=("leaf",))])
    async with open_supervisor([inner], on_event=rec):
        pass
    with trio.move_on_after(1):
        async with open_supervisor([ChildSpec("x", ctl, args=("x",))], on_event=rec):
            await trio.sleep_forever()
    ctl.fail_start["y"] = 1
    with pytest.raises(ChildStartError):
        async with open_supervisor([ChildSpec("y", ctl, args=("y",))], on_event=rec):
            pass
    with pytest.raises(RestartIntensityExceeded):
        async with open_supervisor([ChildSpec("z", crash_now)], max_restarts=0, on_event=rec):
            await trio.sleep_forever()
    reasons = [(e.supervisor, e.reason) for e in rec.of(SupervisorStopped)]
    assert reasons == [
        ("inner", "shutdown"),  # stopped by its parent
        ("", "shutdown"),
        ("", "cancelled"),
        ("", "start failed"),
        ("", "escalated"),
    ]


def test_children_get_a_default_start_timeout() -> None:
    async def worker() -> None:
        pass

    assert ChildSpec("w", worker).start_timeout == DEFAULT_START_TIMEOUT == 30.0
    assert ChildSpec("w", worker, start_timeout=None).start_timeout is None
    nested = supervisor_spec(
        "s", [ChildSpec("a", worker, start_timeout=2.0), ChildSpec("b", worker, start_timeout=3.0)]
    )
    assert nested.start_timeout == 6.0  # theirs, one after the other, plus a second
    assert supervisor_spec("s", [ChildSpec("a", worker, start_timeout=None)]).start_timeout is None
    assert supervisor_spec("s", [], start_timeout=9.0).start_timeout == 9.0


async def test_a_child_that_never_gets_ready_fails_after_the_default_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def never(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep_forever()

    t0 = trio.current_time()
    with pytest.raises(ChildStartError, match="did not become ready within 30s"):
        async with open_supervisor([ChildSpec("n", never)]):
            pass
    assert trio.current_time() - t0 == pytest.approx(30.0)


async def test_a_restart_that_never_gets_ready_times_out_and_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs = 0

    async def hangs_once(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        if runs == 2:
            await trio.sleep_forever()  # the first restart never gets ready
        task_status.started()
        if runs == 1:
            raise Boom("crash")
        await trio.sleep_forever()

    rec = Recorder()
    async with open_supervisor(
        [ChildSpec("h", hangs_once, start_timeout=4.0)], backoff=None, on_event=rec
    ) as sup:
        await until(sup, lambda: runs == 3 and sup.which_children()[0].state is ChildState.RUNNING)
    failed = rec.of(ChildStartFailed)
    assert [type(e.exception).__name__ for e in failed] == ["TimeoutError"]
    assert failed[0].time == pytest.approx(4.0)
