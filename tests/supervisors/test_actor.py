"""Actors: mailboxes, call/cast, crashes during calls, refs across restarts, registry."""

from __future__ import annotations

import contextlib
import functools
import json
from types import NoneType
from typing import Any

import outcome
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisors import (
    Actor,
    ActorCrashed,
    ActorError,
    ActorRef,
    ActorStopped,
    Backoff,
    CallTimeout,
    CallToSelf,
    ChildExited,
    ChildNotFound,
    ChildSpec,
    ChildStartError,
    ChildState,
    Mailbox,
    MailboxFull,
    RestartIntensityExceeded,
    Supervisor,
    SupervisorNotRunning,
    actor_spec,
    open_supervisor,
    supervisor_spec,
    whereis,
)
from supervisors._actor import _Reply
from supervisors.testing import DelayMessages, FaultPlan, kill

from ._helpers import Boom, Recorder, until


class Counter(Actor):
    """Counts casts; answers calls. Its total outlives incarnations via ``store``."""

    async def init(self, start: int, store: dict[str, int] | None = None) -> None:
        self.n = start
        self.store = store if store is not None else {}
        self.gate: trio.Event | None = None

    async def handle_call(self, request: Any) -> Any:
        op, arg = request
        if op == "add":
            self.n += arg
            return self.n
        if op == "boom":
            raise Boom("asked to crash")
        if op == "block":
            await trio.sleep_forever()
        if op == "get":
            return self.n
        raise ValueError(op)

    async def handle_cast(self, message: Any) -> None:
        if message == "reset":
            self.n = 0
        elif message == "slow":
            await trio.sleep(1)
        else:
            self.store["casts"] = self.store.get("casts", 0) + 1


async def test_call_and_cast(autojump_clock: trio.testing.MockClock) -> None:
    async with open_supervisor([actor_spec("counter", Counter, 5)]) as sup:
        ref = whereis("counter")
        assert await ref.call(("add", 1), timeout=1.0) == 6
        await ref.cast("reset")
        ref.cast_nowait("reset")
        assert await ref.call(("get", None)) == 0
        started = await sup.start_child(actor_spec("c2", Counter, 1))
        assert isinstance(started, ActorRef)
        assert await started.call(("add", 2)) == 3


class Slow(Actor):
    """Each cast takes one second; ``entered`` is set when the first one starts."""

    async def init(self, entered: trio.Event) -> None:
        self.entered = entered

    async def handle_cast(self, message: Any) -> None:
        self.entered.set()
        await trio.sleep(1)


async def test_cast_waits_when_full_and_cast_nowait_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    entered = trio.Event()
    async with open_supervisor([actor_spec("c", Slow, entered, mailbox_size=2)]):
        ref = whereis("c")
        await ref.cast("first")
        await entered.wait()  # the actor is busy for 1 s; the mailbox is empty
        ref.cast_nowait("x")
        ref.cast_nowait("x")
        with pytest.raises(MailboxFull, match="mailbox of actor 'c' is full \\(2 messages\\)"):
            ref.cast_nowait("x")
        t0 = trio.current_time()
        await ref.cast("x")  # backpressure: waits until the first cast is done
        assert trio.current_time() - t0 == pytest.approx(1.0)
        assert ref.mailbox.peak == 3  # two queued and one waiting sender


async def test_call_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async with open_supervisor([actor_spec("c", Counter, 0)]):
        ref = whereis("c")
        t0 = trio.current_time()
        with pytest.raises(CallTimeout, match="no reply from actor 'c' within 2s"):
            await ref.call(("block", None), timeout=2.0)
        assert trio.current_time() - t0 == pytest.approx(2.0)


async def test_default_call_timeout_is_five_seconds(autojump_clock: trio.testing.MockClock) -> None:
    async with open_supervisor([actor_spec("c", Counter, 0)]):
        t0 = trio.current_time()
        with pytest.raises(CallTimeout):
            await whereis("c").call(("block", None))
        assert trio.current_time() - t0 == pytest.approx(5.0)


async def test_crash_during_call_fails_the_caller_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_supervisor([actor_spec("c", Counter, 0)]) as sup:
        ref = whereis("c")
        t0 = trio.current_time()
        with pytest.raises(ActorCrashed, match="crashed while handling this call: Boom") as info:
            await ref.call(("boom", None), timeout=30)
        assert trio.current_time() == t0
        assert isinstance(info.value.__cause__, Boom)
        # The ref survives the restart: the next incarnation answers.
        assert await ref.call(("add", 1)) == 1
        assert sup.which_children()[0].restarts == 1


async def test_kill_during_call_fails_the_caller(autojump_clock: trio.testing.MockClock) -> None:
    async with open_supervisor([actor_spec("c", Counter, 0)]) as sup:
        ref = whereis("c")
        async with trio.open_nursery() as nursery:

            async def killer() -> None:
                await trio.sleep(1)
                kill(sup, "c")

            nursery.start_soon(killer)
            with pytest.raises(ActorCrashed):
                await ref.call(("block", None), timeout=30)


async def test_callers_wait_for_the_next_incarnation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = Backoff(initial=2.0, maximum=2.0, jitter=0.0)
    async with open_supervisor([actor_spec("c", Counter, 0)], backoff=backoff) as sup:
        ref = whereis("c")
        kill(sup, "c")
        t0 = trio.current_time()
        assert await ref.call(("add", 7), timeout=5) == 7  # queued, answered after restart
        assert trio.current_time() - t0 == pytest.approx(2.0)
        kill(sup, "c")
        with pytest.raises(CallTimeout):
            await ref.call(("add", 1), timeout=1)


async def test_queued_messages_survive_a_crash(autojump_clock: trio.testing.MockClock) -> None:
    store: dict[str, int] = {}
    async with open_supervisor([actor_spec("c", Counter, 0, store)]):
        ref = whereis("c")
        ref.cast_nowait("slow")
        for _ in range(5):
            ref.cast_nowait("count")
        with pytest.raises(ActorCrashed):
            await ref.call(("boom", None))
        await ref.call(("get", None))
        assert store["casts"] == 5


async def test_registry_is_scoped_to_the_tree(autojump_clock: trio.testing.MockClock) -> None:
    async with open_supervisor([actor_spec("c", Counter, 1)]):
        outer = whereis("c")
        async with open_supervisor([actor_spec("c", Counter, 100)]):
            assert await whereis("c").call(("get", None)) == 100
        assert await whereis("c").call(("get", None)) == 1
        assert await outer.call(("get", None)) == 1
    with pytest.raises(SupervisorNotRunning):
        whereis("c")


async def test_two_sibling_trees_never_see_each_other(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: dict[str, list[str]] = {}

    async def tree(name: str) -> None:
        async with open_supervisor([actor_spec(name, Counter, 0)]):
            seen[name] = []
            for other in ("left", "right"):
                try:
                    whereis(other)
                    seen[name].append(other)
                except ChildNotFound:
                    pass
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tree, "left")
        nursery.start_soon(tree, "right")
    assert seen == {"left": ["left"], "right": ["right"]}


async def test_whereis_paths_and_errors(autojump_clock: trio.testing.MockClock) -> None:
    async def plain() -> None:
        await trio.sleep_forever()

    children = [
        supervisor_spec("db", [actor_spec("writer", Counter, 3)]),
        ChildSpec("plain", plain),
        supervisor_spec("x", [actor_spec("dup", Counter, 0)]),
        supervisor_spec("y", [actor_spec("dup", Counter, 0)]),
    ]
    async with open_supervisor(children):
        assert await whereis("db/writer").call(("get", None)) == 3
        assert await whereis("writer").call(("get", None)) == 3
        with pytest.raises(ChildNotFound, match="not an actor"):
            whereis("plain")
        with pytest.raises(ChildNotFound, match="ambiguous"):
            whereis("dup")
        with pytest.raises(ChildNotFound, match="no child named 'nope'"):
            whereis("nope")


async def test_terminate_gets_the_reason(autojump_clock: trio.testing.MockClock) -> None:
    reasons: list[BaseException | None] = []

    class Noter(Counter):
        async def terminate(self, reason: BaseException | None) -> None:
            reasons.append(reason)

    async with open_supervisor([actor_spec("n", Noter, 0)]):
        with pytest.raises(ActorCrashed):
            await whereis("n").call(("boom", None))
        await whereis("n").call(("get", None))
    assert [type(r).__name__ for r in reasons] == ["Boom", "NoneType"]


def test_actor_spec_bad_input() -> None:
    with pytest.raises(TypeError, match="Actor subclass"):
        actor_spec("x", dict)  # type: ignore[arg-type]
    for size in (0, True, 2.5):
        with pytest.raises(ValueError, match="mailbox_size must be an int >= 1"):
            actor_spec("x", Counter, mailbox_size=size)  # type: ignore[arg-type]
    spec = actor_spec("x", Counter, meta={"team": "chat"})  # the user's meta is kept
    assert spec.meta["team"] == "chat"
    assert isinstance(spec.meta["mailbox"], Mailbox)
    assert spec.meta["mailbox"].peak == 0


async def test_snapshot_is_json(autojump_clock: trio.testing.MockClock) -> None:
    children = [
        supervisor_spec("db", [actor_spec("writer", Counter, 3, mailbox_size=10)], backoff=None),
        actor_spec("c", Counter, 0),
    ]
    async with open_supervisor(children, name="app", backoff=None) as sup:
        whereis("c").cast_nowait("count")
        with pytest.raises(ActorCrashed):
            await whereis("writer").call(("boom", None))
        await trio.sleep(2)
        snap = json.loads(json.dumps(sup.snapshot()))
    assert snap["id"] == "app"
    assert snap["ready"] is True
    db = snap["children"][0]
    assert db["kind"] == "supervisor"
    writer = db["children"][0]
    assert writer["path"] == "db/writer"
    assert writer["restarts"] == 1
    assert writer["last_error"] == "Boom: asked to crash"
    assert writer["mailbox"] == {"depth": 0, "peak": 1, "size": 10}
    assert writer["uptime"] == pytest.approx(2.0)


async def test_a_cancelled_cast_has_no_effect(autojump_clock: trio.testing.MockClock) -> None:
    store: dict[str, int] = {}
    async with open_supervisor([actor_spec("c", Counter, 0, store)]):
        ref = whereis("c")
        with trio.CancelScope() as scope:
            scope.cancel()
            await ref.cast("count")
        assert scope.cancelled_caught
        assert ref.mailbox.depth == 0
        await ref.call(("get", None))
        assert store == {}


async def test_a_cast_queued_to_an_idle_actor_just_before_a_kill_survives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Writer(Actor):
        async def init(self, store: list[Any]) -> None:
            self.store = store

        async def handle_cast(self, message: Any) -> None:
            await trio.lowlevel.checkpoint()  # as a real write would
            self.store.append(message)

        async def handle_call(self, request: Any) -> Any:
            return len(self.store)

    store: list[Any] = []
    async with open_supervisor([actor_spec("w", Writer, store)]) as sup:
        ref = whereis("w")
        await trio.sleep(1)  # the actor waits on its empty mailbox
        ref.cast_nowait("queued")  # handed straight to the waiting actor...
        kill(sup, "w")  # ...which is killed before it runs again
        assert await ref.call("sync") == 1
        assert store == ["queued"]
        assert sup.which_children()[0].restarts == 1


async def test_a_killed_call_has_the_kill_exception_as_cause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_supervisor([actor_spec("c", Counter, 0)]) as sup, trio.open_nursery() as n:
        ref = whereis("c")

        async def killer() -> None:
            await trio.sleep(1)
            kill(sup, "c", ConnectionError("chaos"))

        n.start_soon(killer)
        with pytest.raises(ActorCrashed, match="ConnectionError: chaos") as info:
            await ref.call(("block", None), timeout=30)
        assert isinstance(info.value.__cause__, ConnectionError)


class Recursive(Counter):
    async def handle_call(self, request: Any) -> Any:
        if request == "self":
            return await self.ref.call(("get", None))
        if request == "self-from-a-task":
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.ref.call, ("get", None))
        return await super().handle_call(request)


async def test_a_call_to_itself_fails_at_once(autojump_clock: trio.testing.MockClock) -> None:
    async with open_supervisor([actor_spec("r", Recursive, 0)], backoff=None):
        ref = whereis("r")
        for request in ("self", "self-from-a-task"):
            t0 = trio.current_time()
            with pytest.raises(ActorCrashed) as info:
                await ref.call(request, timeout=30)
            assert trio.current_time() == t0
            cause = collapse(info.value.__cause__)
            assert isinstance(cause, CallToSelf)
            assert str(cause) == (
                "actor 'r' called itself: it cannot answer while it waits "
                "(handle the request directly, or cast to yourself)"
            )
        assert await ref.call(("get", None)) == 0


def collapse(exc: BaseException | None) -> BaseException | None:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def test_callers_queued_at_a_terminated_actor_fail_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_supervisor([actor_spec("c", Counter, 0)]) as sup:
        ref = whereis("c")
        failures: list[BaseException] = []

        async def caller(request: Any) -> None:
            try:
                await ref.call(request, timeout=30)
            except (ActorCrashed, ActorStopped) as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller, ("block", None))
            await trio.sleep(1)
            nursery.start_soon(caller, ("add", 1))  # queued behind the blocked call
            await trio.sleep(1)
            t0 = trio.current_time()
            await sup.terminate_child("c")
        assert trio.current_time() == t0
        assert [type(e) for e in failures] == [ActorCrashed, ActorStopped]
        with pytest.raises(ActorStopped, match="actor 'c' is terminated"):
            await ref.call(("get", None), timeout=30)
        assert trio.current_time() == t0
        await sup.restart_child("c")
        assert await ref.call(("get", None)) == 0  # the failed call had no effect


async def test_a_caller_waiting_on_a_full_mailbox_of_a_terminated_actor_fails_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_supervisor([actor_spec("c", Counter, 0, mailbox_size=1)]) as sup:
        ref = whereis("c")
        failures: list[type[BaseException]] = []

        async def caller(request: Any) -> None:
            try:
                await ref.call(request, timeout=30)
            except (ActorCrashed, ActorStopped) as exc:
                failures.append(type(exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller, ("block", None))
            await trio.sleep(1)
            ref.cast_nowait("count")  # fills the mailbox
            nursery.start_soon(caller, ("add", 1))  # waits for space
            await trio.sleep(1)
            t0 = trio.current_time()
            await sup.terminate_child("c")
        assert trio.current_time() == t0
        assert failures == [ActorCrashed, ActorStopped]


async def test_terminate_does_not_run_after_a_failed_init(
    autojump_clock: trio.testing.MockClock,
) -> None:
    terminated: list[BaseException | None] = []

    class FailsInit(Actor):
        async def init(self) -> None:
            raise ValueError("no config")

        async def terminate(self, reason: BaseException | None) -> None:
            terminated.append(reason)
            raise KeyError("terminate assumed init had run")

    async with open_supervisor() as sup:
        with pytest.raises(ChildStartError) as info:
            await sup.start_child(actor_spec("f", FailsInit))
    assert isinstance(info.value.__cause__, ValueError)
    assert terminated == []


async def test_an_error_in_terminate_never_replaces_the_real_one(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    class BadTerminate(Counter):
        async def terminate(self, reason: BaseException | None) -> None:
            raise KeyError("cleanup bug")

    rec = Recorder()
    async with open_supervisor([actor_spec("b", BadTerminate, 0)], on_event=rec):
        with pytest.raises(ActorCrashed) as info:
            await whereis("b").call(("boom", None))
        assert isinstance(info.value.__cause__, Boom)
        await whereis("b").call(("get", None))
    exits = rec.of(ChildExited)
    assert [type(e.exception) for e in exits] == [Boom, NoneType]
    assert [r.getMessage() for r in caplog.records] == [
        "actor 'b': terminate() failed (the real exit reason stands)"
    ] * 2


async def test_a_call_its_caller_left_before_the_actor_took_it_has_no_effect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Tally(Actor):
        async def init(self) -> None:
            self.n = 0

        async def handle_call(self, request: Any) -> Any:
            if request == "slow":
                await trio.sleep(2)
            else:
                self.n += request
            return self.n

    async with open_supervisor([actor_spec("t", Tally)]), trio.open_nursery() as nursery:
        ref = whereis("t")
        nursery.start_soon(ref.call, "slow")  # busy until t=2
        await trio.sleep(1)
        with pytest.raises(CallTimeout):
            await ref.call(5, timeout=0.5)  # left at t=1.5, still queued
        with trio.move_on_after(0.25):
            await ref.call(7)  # cancelled at t=1.75, still queued
        assert await ref.call(0) == 0


async def test_callers_wait_for_an_actor_whose_supervisor_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = Backoff(initial=1.0, maximum=1.0, jitter=0.0)
    children = [supervisor_spec("g", [actor_spec("c", Counter, 0)])]
    async with open_supervisor(children, backoff=backoff) as sup:
        ref = whereis("g/c")
        t0 = trio.current_time()
        kill(sup, "g")
        await until(sup, lambda: sup.which_children()[0].state is ChildState.RESTARTING)
        assert await ref.call(("add", 2), timeout=5) == 2  # queued, answered after restart
        assert trio.current_time() - t0 == pytest.approx(1.0)
    with pytest.raises(ActorStopped):  # the whole tree has stopped
        await ref.call(("get", None))


async def blocked_call(ref: ActorRef) -> None:
    """A call the actor is busy with until it stops: it ends in ``ActorCrashed``."""
    with pytest.raises(ActorCrashed):
        await ref.call(("block", None), timeout=30)


async def test_every_caller_queued_at_a_terminated_actor_gets_its_own_actor_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_supervisor([actor_spec("c", Counter, 0)]) as sup:
        ref = whereis("c")
        failures: list[BaseException] = []

        async def caller() -> None:
            try:
                await ref.call(("add", 1), timeout=30)
            except ActorStopped as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked_call, ref)
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(3):
                nursery.start_soon(caller)
            await trio.testing.wait_all_tasks_blocked()  # three queued behind the block
            await sup.terminate_child("c")
        assert [str(exc) for exc in failures] == [
            "actor 'c' is terminated: the call was not handled"
        ] * 3
        assert len({id(exc) for exc in failures}) == 3  # one exception per caller


async def caller_noting_failures(ref: ActorRef, failures: list[type[BaseException]]) -> None:
    try:
        await ref.call(("add", 1), timeout=30)
    except ActorError as exc:
        failures.append(type(exc))


async def test_callers_at_an_actor_whose_nested_supervisor_escalated_fail_when_the_tree_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # g gives up first (its actor is then terminated while the root still runs), and the
    # root gives up right after it: the whole tree has stopped, so callers fail at once.
    children = [supervisor_spec("g", [actor_spec("c", Counter, 0)], max_restarts=0)]
    failures: list[type[BaseException]] = []
    killed_at: list[float] = []

    async def tree(outside: trio.Nursery) -> None:
        async with open_supervisor(children, max_restarts=0) as sup:
            ref = whereis("g/c")
            outside.start_soon(blocked_call, ref)
            await trio.testing.wait_all_tasks_blocked()
            outside.start_soon(caller_noting_failures, ref, failures)  # queued behind it
            await trio.testing.wait_all_tasks_blocked()
            killed_at.append(trio.current_time())
            kill(sup, "g/c")
            await trio.sleep_forever()

    async with trio.open_nursery() as outside:  # callers outside the tree's own block
        with pytest.raises(RestartIntensityExceeded):
            await tree(outside)
    assert failures == [ActorStopped]
    assert trio.current_time() == killed_at[0]


async def test_callers_at_an_actor_whose_nested_supervisor_was_terminated_fail_when_the_tree_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    failures: list[type[BaseException]] = []
    children = [supervisor_spec("g", [actor_spec("c", Counter, 0)])]
    async with trio.open_nursery() as outside, open_supervisor(children) as sup:
        ref = whereis("g/c")
        outside.start_soon(blocked_call, ref)
        await trio.testing.wait_all_tasks_blocked()
        outside.start_soon(caller_noting_failures, ref, failures)
        await trio.testing.wait_all_tasks_blocked()
        await sup.terminate_child("g")  # g may come back: the caller waits for that...
        await trio.sleep(1)
        assert failures == []
        t0 = trio.current_time()
    # ...until the tree stops: then it fails at once
    assert failures == [ActorStopped]
    assert trio.current_time() == t0


async def test_callers_queued_at_an_actor_whose_start_child_fails_get_actor_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = trio.Event()

    class FailsInitLate(Actor):
        async def init(self) -> None:
            await gate.wait()
            raise ValueError("no config")

    failures: list[type[BaseException]] = []
    async with open_supervisor() as sup, trio.open_nursery() as nursery:

        async def start() -> None:
            with pytest.raises(ChildStartError):
                await sup.start_child(actor_spec("f", FailsInitLate))

        nursery.start_soon(start)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(caller_noting_failures, whereis("f"), failures)  # registered
        await trio.testing.wait_all_tasks_blocked()  # while it starts: the call queues
        t0 = trio.current_time()
        gate.set()
    assert failures == [ActorStopped]  # "a failed start": docs/actors.md
    assert trio.current_time() == t0


async def test_two_incarnations_of_an_actor_never_handle_messages_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handling: list[int] = []
    most: list[int] = []

    class Stubborn(Actor):
        async def handle_call(self, request: Any) -> Any:
            handling.append(1)
            most.append(len(handling))
            try:
                with trio.CancelScope(shield=request == "stubborn"):
                    await trio.sleep(10)
            finally:
                handling.pop()

    async with (
        open_supervisor([actor_spec("s", Stubborn, shutdown=1.0)]) as sup,
        trio.open_nursery() as nursery,
    ):
        ref = whereis("s")
        for request in ("stubborn", "next"):
            nursery.start_soon(functools.partial(ref.call, request, timeout=30))
            await trio.testing.wait_all_tasks_blocked()
        # the old incarnation overstays its 1 s budget: no second one while it runs
        with pytest.raises(ChildStartError, match="overstayed its stop and still runs"):
            await sup.restart_child("s")
        assert sup.which_children()[0].state is ChildState.RESTARTING
        await trio.sleep(20)  # the old one ends at t=10; the next one starts then
        assert sup.which_children()[0].state is ChildState.RUNNING
        nursery.cancel_scope.cancel()
    assert max(most) == 1


class Journal(Actor):
    """Notes when each message begins and ends being handled; one checkpoint between."""

    async def init(self, began: list[Any], done: list[Any]) -> None:
        self.began, self.done = began, done

    async def handle_cast(self, message: Any) -> None:
        self.began.append(message)
        await trio.sleep(0.01)
        self.done.append(message)

    async def handle_call(self, request: Any) -> Any:
        if request == "sync":
            return None
        await self.handle_cast(request)
        return request


OPS = st.one_of(
    st.tuples(st.just("cast_nowait")),
    st.tuples(st.just("cast"), st.sampled_from([0.0, 0.01, 0.05])),  # cancelled after
    st.tuples(st.just("call"), st.sampled_from([0.0, 0.005, 0.02, 1.0, 30.0])),  # timeout
    st.tuples(st.just("kill"), st.sampled_from([0.0, 0.001, 0.005, 0.01, 0.02])),  # after
    st.tuples(st.just("sleep"), st.sampled_from([0.0, 0.003, 0.01, 0.05])),
    st.tuples(st.just("terminate")),
    st.tuples(st.just("restart")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    ops=st.lists(OPS, max_size=30),
    size=st.integers(1, 4),
    nested=st.booleans(),
    delayed=st.booleans(),
    ending=st.sampled_from(["drain", "shutdown"]),
)
def test_casts_and_calls_keep_their_rules_across_any_sequence_of_kills(
    ops: list[tuple[Any, ...]], size: int, nested: bool, delayed: bool, ending: str
) -> None:
    """Every acknowledged cast is handled exactly once, in order, unless it was the one
    being handled at a kill/stop; a cancelled cast has no effect; every call is answered
    or fails with a typed error within its timeout (at once when the tree stops), and
    ActorStopped means it had no effect."""

    async def scenario() -> None:
        began: list[Any] = []
        done: list[Any] = []
        acked: list[Any] = []
        cancelled: list[Any] = []
        outcomes: dict[Any, type[BaseException] | None] = {}
        path = "g/a" if nested else "a"
        spec = actor_spec("a", Journal, began, done, mailbox_size=size)
        specs = (
            [supervisor_spec("g", [spec], max_restarts=10**6, backoff=None)] if nested else [spec]
        )
        if delayed:  # the first messages are held a while: kills land on held ones too
            specs.append(FaultPlan([DelayMessages(path, delay=0.03, count=3)]).spec())
        interrupts = 0

        async def call(ref: ActorRef, i: int, timeout: float) -> None:
            t0 = trio.current_time()
            try:
                await ref.call(("k", i), timeout=timeout)
                outcomes[("k", i)] = None
            except (CallTimeout, ActorCrashed, ActorStopped) as exc:
                outcomes[("k", i)] = type(exc)
            assert trio.current_time() - t0 <= timeout + 1e-9  # float sums of sleeps

        async def kill_after(sup: Supervisor, delay: float) -> None:
            nonlocal interrupts
            await trio.sleep(delay)
            interrupts += kill(sup, path)

        async with trio.open_nursery() as outside:
            async with open_supervisor(specs, max_restarts=10**6, backoff=None) as sup:
                ref = whereis(path)
                handle = sup.child_handle("g") if nested else None
                top = handle.subtree if handle is not None else sup
                assert top is not None
                for i, (op, *arg) in enumerate(ops):
                    if op == "cast_nowait":
                        with contextlib.suppress(MailboxFull):
                            ref.cast_nowait(("c", i))
                            acked.append(("c", i))
                    elif op == "cast":
                        with trio.move_on_after(arg[0]):
                            await ref.cast(("c", i))
                            acked.append(("c", i))
                        if acked[-1:] != [("c", i)]:
                            cancelled.append(("c", i))
                    elif op == "call":
                        outside.start_soon(call, ref, i, arg[0])
                    elif op == "kill":
                        outside.start_soon(kill_after, sup, arg[0])
                    elif op == "sleep":
                        await trio.sleep(arg[0])
                    elif op == "terminate":
                        await top.terminate_child("a")
                        interrupts += 1
                    else:
                        await top.restart_child("a")
                        interrupts += 1
                if ending == "drain":
                    if top.which_children()[0].state is ChildState.TERMINATED:
                        await top.restart_child("a")
                    await trio.sleep(5)  # past every delay, kill and restart
                    await ref.call("sync", timeout=5)
                    assert ref.mailbox.depth == 0
                stopped_at = trio.current_time()
            if ending == "shutdown":
                await trio.testing.wait_all_tasks_blocked()
                # callers failed at once when the tree stopped: none waits for its timeout
                assert trio.current_time() == stopped_at
                outside.cancel_scope.cancel()  # pending kills
        assert len(done) == len(set(done))  # nothing handled twice
        casts = [m for m in done if m[0] == "c"]
        assert casts == sorted(casts)  # in order
        assert not set(cancelled) & set(began)  # a cancelled cast had no effect
        for result_of, result in outcomes.items():
            if result is None:
                assert result_of in done
            elif result is ActorStopped:
                assert result_of not in began
            elif result is ActorCrashed:
                assert result_of in began
                assert result_of not in done
        if ending == "drain":  # each acknowledged cast handled, or cut while handled
            cut = [m for m in acked if m not in done]
            assert set(cut) <= set(began)
            assert len(cut) <= interrupts

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_crash_messages_name_the_actor(autojump_clock: trio.testing.MockClock) -> None:
    paths: list[str] = []

    class Named(Counter):
        async def init(self, start: int, store: dict[str, int] | None = None) -> None:
            await super().init(start, store)
            paths.append(self.ref.path)

        async def handle_call(self, request: Any) -> Any:
            if request == "bare":
                raise Boom  # no message: none after the type either
            return await super().handle_call(request)

    children = [supervisor_spec("g", [actor_spec("c", Named, 0)], backoff=None)]
    async with open_supervisor(children) as sup:
        ref = whereis("g/c")
        with pytest.raises(ActorCrashed) as info:
            await ref.call("bare")
        assert str(info.value) == "actor 'g/c' crashed while handling this call: Boom"
        with pytest.raises(ActorCrashed) as info:
            await ref.call(("boom", None))
        assert str(info.value) == (
            "actor 'g/c' crashed while handling this call: Boom: asked to crash"
        )

        async def stopped_call() -> None:
            with pytest.raises(ActorCrashed) as info:
                await ref.call(("block", None), timeout=30)
            assert str(info.value) == "actor 'g/c' was stopped while handling this call"
            assert info.value.__cause__ is None

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stopped_call)
            await trio.testing.wait_all_tasks_blocked()
            stopped = sup.child_handle("g")
            assert stopped is not None
            assert stopped.subtree is not None
            await stopped.subtree.terminate_child("c")
    assert paths == ["g/c"] * 3


async def test_terminate_gets_the_exception_given_to_kill(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reasons: list[BaseException | None] = []

    class Noter(Counter):
        async def terminate(self, reason: BaseException | None) -> None:
            reasons.append(reason)

    chaos = ConnectionError("chaos")
    async with open_supervisor([actor_spec("n", Noter, 0)]) as sup:
        kill(sup, "n", chaos)
        await whereis("n").call(("get", None))
    assert reasons == [chaos, None]


async def test_a_call_dropped_while_a_fault_held_it_has_no_effect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plan = FaultPlan([DelayMessages("c", delay=2.0, kind="call")])
    async with open_supervisor([actor_spec("c", Counter, 0), plan.spec()]):
        ref = whereis("c")
        with pytest.raises(CallTimeout):
            await ref.call(("add", 5), timeout=1)  # its caller left during the delay
        assert await ref.call(("get", None)) == 0


async def test_a_task_the_actor_started_elsewhere_may_call_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Not a call to itself: the task runs in a nursery the actor does not own, so the
    # actor is free to answer it.
    class Spawner(Counter):
        async def handle_cast(self, message: Any) -> None:
            nursery, answers = message
            nursery.start_soon(self.ask, answers)

        async def ask(self, answers: list[Any]) -> None:
            answers.append(await self.ref.call(("add", 1), timeout=5))

    answers: list[Any] = []
    async with trio.open_nursery() as outside, open_supervisor([actor_spec("s", Spawner, 0)]):
        await whereis("s").cast((outside, answers))
        await trio.testing.wait_all_tasks_blocked()
    assert answers == [1]


async def test_every_queued_caller_fails_at_once_while_a_handler_overstays(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Stubborn(Counter):
        async def handle_call(self, request: Any) -> Any:
            if request == "stubborn":
                with trio.CancelScope(shield=True):
                    await trio.sleep(10)
                return "done at last"
            return await super().handle_call(request)

    failures: list[type[BaseException]] = []
    async with (
        open_supervisor([actor_spec("s", Stubborn, 0, shutdown=1.0)]) as sup,
        trio.open_nursery() as nursery,
    ):
        ref = whereis("s")
        nursery.start_soon(functools.partial(ref.call, "stubborn", timeout=30))
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(20):
            nursery.start_soon(caller_noting_failures, ref, failures)
        await trio.testing.wait_all_tasks_blocked()
        await sup.terminate_child("s")  # waits the 1 s budget; the handler goes on
        await trio.testing.wait_all_tasks_blocked()
        assert failures == [ActorStopped] * 20
        assert trio.current_time() == 1.0


async def test_finished_calls_leave_nothing_behind(autojump_clock: trio.testing.MockClock) -> None:
    async with open_supervisor([actor_spec("c", Counter, 0)]):
        ref = whereis("c")
        for _ in range(3):
            await ref.call(("add", 1))
        with pytest.raises(CallTimeout):
            await ref.call(("block", None), timeout=1)
        assert not ref.mailbox._calls  # no reply kept past its call


async def test_an_actor_without_handlers_fails_the_call_not_the_caller(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Bare(Actor):
        pass

    async with open_supervisor([actor_spec("b", Bare)]) as sup:
        with pytest.raises(ActorCrashed, match="Bare does not handle calls") as info:
            await whereis("b").call("x")
        assert isinstance(info.value.__cause__, NotImplementedError)
        await whereis("b").cast("y")  # crashes it, as any exception in a handler
        await until(sup, lambda: sup.which_children()[0].restarts == 2)
        error = sup.which_children()[0].last_error
        assert isinstance(error, NotImplementedError)
        assert str(error) == "Bare does not handle casts"


async def test_a_reply_once_delivered_is_final() -> None:
    # ActorStopped means "not handled": it must never replace a reply already given
    reply = _Reply()
    reply.deliver(outcome.Value(1))
    reply.deliver(outcome.Error(ActorStopped("too late")))
    assert await reply.wait() == 1
    left = _Reply()
    with trio.move_on_after(0):
        await left.wait()
    left.deliver(outcome.Value(2))  # its caller left: nothing is kept for it
    assert left.result is None


async def test_an_actor_with_a_stall_timeout_reports_progress_per_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store: dict[str, int] = {}
    spec = actor_spec("c", Counter, 0, store, stall_timeout=1.0)
    async with open_supervisor([spec]) as sup:
        ref = whereis("c")
        for _ in range(10):  # busy the whole time, never a second without a message
            await trio.sleep(0.5)
            await ref.cast("count")
        await ref.call(("get", None))
        assert sup.which_children()[0].restarts == 0
    assert store["casts"] == 10
