"""Behaviours of ``_actor.py`` that the mutation run (``make mutants
MODULE=supervisors/_actor.py``) found unchecked: each test's docstring names the
surviving mutants it kills (``_ActorRunner.__call__`` 4 is
``supervisors._actor.xǁ_ActorRunnerǁ__call____mutmut_4``). docs/mutants.md lists them,
and the survivors no test can tell apart."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from supervisors import (
    Actor,
    ActorCrashed,
    CallTimeout,
    actor_spec,
    open_supervisor,
    whereis,
)

from ._helpers import Boom


class Logger(Actor):
    """Logs what it handles; holds each message until ``gate`` is set (if given)."""

    async def init(self, log: list[Any], gate: trio.Event | None = None) -> None:
        self.log = log
        self.gate = gate

    async def handle_call(self, request: Any) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        if request == "boom":
            raise Boom("in the call")
        self.log.append(request)
        return request

    async def handle_cast(self, message: Any) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.log.append(message)

    async def terminate(self, reason: BaseException | None) -> None:
        self.log.append(("terminate", reason))


async def settle(done: Any, rounds: int = 100) -> None:
    """Let the runnable tasks run until ``done()`` holds, for at most ``rounds``
    scheduling rounds (no time passes: an actor that spins without handling anything
    fails the assertion that follows instead of hanging the test)."""
    for _ in range(rounds):
        if done():
            return
        await trio.lowlevel.checkpoint()


async def test_a_send_given_up_on_a_full_mailbox_leaves_its_depth_as_it_was(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kills ``Mailbox._put`` 8, 9, 10 (the depth after a cancelled wait for space: set to
    1, raised, or lowered by 2 instead of by 1)."""
    log: list[Any] = []
    gate = trio.Event()
    async with open_supervisor([actor_spec("g", Logger, log, gate, mailbox_size=2)]):
        ref = whereis("g")
        await ref.cast(1)
        await trio.testing.wait_all_tasks_blocked()  # the actor holds 1, waiting on gate
        await ref.cast(2)
        await ref.cast(3)
        assert ref.mailbox.depth == 2
        with trio.move_on_after(1):
            await ref.cast(4)  # waits for space, then gives up
        assert (ref.mailbox.depth, ref.mailbox.peak) == (2, 3)
        with pytest.raises(CallTimeout):
            await ref.call(5, timeout=1)  # the same wait, in a call
        assert (ref.mailbox.depth, ref.mailbox.peak) == (2, 3)
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert log == [1, 2, 3]
        assert ref.mailbox.depth == 0


async def test_an_actor_runs_outside_a_supervisor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kills ``_ActorRunner.__call__`` 4, 17, 18, 23, 42, 43 (reading the child handle,
    or its scope, when there is none: an AttributeError), ``Mailbox.__init__`` 17 (a
    mailbox that starts "down": a call before any supervisor watched it fails with
    ActorStopped) and ``_cancel_pending`` 1, 2 (every message taken seen as cancelled: the
    actor puts it back and takes it again for ever)."""
    log: list[Any] = []
    spec = actor_spec("e", Logger, log)
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(spec.target)
        assert ref.path == "Logger"  # no child: named after its class
        await ref.cast("cast")
        await settle(lambda: log)
        assert log == ["cast"]
        assert await ref.call("call", timeout=1) == "call"
        nursery.cancel_scope.cancel()
    assert log[:2] == ["cast", "call"]
    [(what, reason)] = log[2:]  # cancelled from outside: terminate() is told so
    assert what == "terminate"
    assert isinstance(reason, trio.Cancelled)
    assert ref.mailbox.depth == 0


async def test_a_message_handed_over_as_it_is_cancelled_outside_a_supervisor_is_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kills ``_cancel_pending`` 1, 2 (see above) on the path that puts a message back: it
    is handled by the next run, once."""
    log: list[Any] = []
    spec = actor_spec("e", Logger, log)
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(spec.target)
        await trio.testing.wait_all_tasks_blocked()  # the actor waits in receive()
        ref.cast_nowait("kept")  # handed to the waiting actor...
        nursery.cancel_scope.cancel()  # ...which is cancelled before it runs again
    assert "kept" not in log
    assert ref.mailbox.depth == 1
    async with trio.open_nursery() as nursery:
        await nursery.start(spec.target)
        await settle(lambda: "kept" in log)
        assert log.count("kept") == 1
        assert ref.mailbox.depth == 0
        nursery.cancel_scope.cancel()


async def test_an_actor_crashing_outside_a_supervisor_fails_the_call_and_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kills ``_ActorRunner.__call__`` 88 (reading the handle's injected error when there
    is no handle: an AttributeError before the caller is answered and ``terminate``
    runs)."""
    log: list[Any] = []
    got: list[BaseException] = []
    spec = actor_spec("e", Logger, log)
    with pytest.RaisesGroup(Boom):
        async with trio.open_nursery() as nursery:
            ref = await nursery.start(spec.target)
            try:
                await ref.call("boom", timeout=1)
            except ActorCrashed as exc:
                got.append(exc)
            await trio.sleep_forever()  # the actor's Boom ends the nursery
    [crashed] = got
    assert isinstance(crashed.__cause__, Boom)
    [(what, reason)] = log
    assert what == "terminate"
    assert isinstance(reason, Boom)


async def test_fault_filters_apply_to_an_actor_with_a_stall_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Kills ``_ActorRunner.__call__`` 33 (a message taken while the stall watchdog
    watches marked as filtered already: the mailbox's filter skipped)."""
    log: list[Any] = []

    async def upper(kind: int, payload: Any) -> Any:
        return payload.upper()

    async with open_supervisor([actor_spec("t", Logger, log, stall_timeout=10.0)]):
        ref = whereis("t")
        ref.mailbox.filter = upper
        assert await ref.call("a") == "A"
        await ref.cast("b")
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["A", "B"]


async def test_actor_spec_defaults(autojump_clock: trio.testing.MockClock) -> None:
    """Kills ``actor_spec`` 1 (a default mailbox of 101) and 12, 14, 17, 18 (the child's
    kind ``None`` or other text than ``"actor"``: what ``which_children`` and snapshots
    show)."""
    spec = actor_spec("a", Logger, [])
    assert spec.kind == "actor"
    assert spec.meta["mailbox"].size == 100
    assert actor_spec("b", Logger, [], kind="custom").kind == "custom"
    async with open_supervisor([spec]) as sup:
        [info] = sup.which_children()
        assert info.kind == "actor"
