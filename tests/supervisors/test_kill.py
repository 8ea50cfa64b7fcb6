"""supervisors.testing.kill: inject a failure into a child by path."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from supervisors import (
    Backoff,
    ChildExited,
    ChildNotFound,
    ChildSpec,
    ChildState,
    ExitReason,
    Killed,
    open_supervisor,
)
from supervisors import supervisor_spec as nested
from supervisors.testing import kill

from ._helpers import Controlled, Recorder, until


async def test_kill_by_path_restarts_with_the_injected_exception(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    rec = Recorder()
    children = [nested("db", [ChildSpec("replica", ctl, args=("replica",))])]
    async with open_supervisor(children, on_event=rec) as sup:
        assert kill(sup, "db/replica", ConnectionError("chaos"))
        await until(sup, lambda: ctl.starts["replica"] == 2)
        assert ctl.log == ["start replica", "stop replica", "start replica"]
    exited = rec.of(ChildExited)[0]
    assert exited.path == "db/replica"
    assert exited.reason is ExitReason.KILLED
    assert isinstance(exited.exception, ConnectionError)


async def test_kill_default_exception_and_bad_paths(autojump_clock: trio.testing.MockClock) -> None:
    ctl = Controlled()
    rec = Recorder()
    async with open_supervisor([ChildSpec("a", ctl, args=("a",))], on_event=rec) as sup:
        kill(sup, "a")
        await until(sup, lambda: ctl.starts["a"] == 2)
        with pytest.raises(ChildNotFound):
            kill(sup, "nope")
        with pytest.raises(ChildNotFound, match="not a supervisor"):
            kill(sup, "a/b")
    assert isinstance(rec.of(ChildExited)[0].exception, Killed)


async def test_kill_refuses_what_is_not_an_exception(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    async with open_supervisor([ChildSpec("a", ctl, args=("a",))]) as sup:
        for exc in (KeyboardInterrupt(), SystemExit(1), trio.Cancelled._create()):
            with pytest.raises(TypeError, match="kill\\(\\) takes an Exception"):
                kill(sup, "a", exc)  # type: ignore[arg-type]
        assert sup.which_children()[0].restarts == 0
        assert ctl.starts["a"] == 1


async def test_kill_of_a_child_between_incarnations_returns_false(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    backoff = Backoff(initial=5.0, maximum=5.0, jitter=0.0)
    children = [ChildSpec("a", ctl, args=("a",)), nested("g", [ChildSpec("b", ctl, args=("b",))])]
    async with open_supervisor(children, backoff=backoff) as sup:
        assert kill(sup, "a")
        assert kill(sup, "g")
        await until(sup, lambda: sup.which_children()[1].state is ChildState.RESTARTING)
        assert kill(sup, "a") is False  # waiting out its backoff
        assert kill(sup, "g/b") is False  # its supervisor is waiting out its backoff


async def test_kill_of_a_child_waiting_out_its_backoff_returns_false(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 26: it raised ChildNotFound where the docstring says it returns False.
    ctl = Controlled()
    backoff = Backoff(initial=10.0, maximum=10.0, jitter=0.0)
    children = [ChildSpec("a", ctl, args=("a",)), nested("g", [ChildSpec("b", ctl, args=("b",))])]
    async with open_supervisor(children, backoff=backoff) as sup:
        ctl.crash("a")
        await until(sup, lambda: sup.which_children()[0].state is ChildState.RESTARTING)
        assert kill(sup, "a") is False
        assert kill(sup, "g")
        await until(sup, lambda: sup.which_children()[1].state is ChildState.RESTARTING)
        assert kill(sup, "g/b") is False  # its supervisor is down: nothing runs there
        with pytest.raises(ChildNotFound):
            kill(sup, "nope")
