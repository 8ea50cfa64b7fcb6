"""Actors: mailboxes, call/cast, crashes during calls, refs across restarts, registry."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from supervisors import (
    Actor,
    ActorCrashed,
    ActorRef,
    Backoff,
    CallTimeout,
    ChildNotFound,
    ChildSpec,
    MailboxFull,
    SupervisorNotRunning,
    actor_spec,
    open_supervisor,
    supervisor_spec,
    whereis,
)
from supervisors.testing import kill

from ._helpers import Boom


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
    with pytest.raises(ValueError, match="mailbox_size must be an int >= 1"):
        actor_spec("x", Counter, mailbox_size=0)


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
