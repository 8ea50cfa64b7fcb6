"""supervisors.testing.kill: inject a failure into a child by path."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from supervisors import ChildExited, ChildNotFound, ChildSpec, ExitReason, Killed, open_supervisor
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
