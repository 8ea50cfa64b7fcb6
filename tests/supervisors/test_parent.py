"""``Supervisor.parent``: the way up from a nested supervisor to the root of its tree."""

from __future__ import annotations

import trio
import trio.testing

import supervisors
from supervisors import ChildSpec, Supervisor, open_supervisor, supervisor_spec


async def test_parent_walks_up_to_the_root(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[Supervisor] = []

    async def leaf(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sup = supervisors.current_child().supervisor
        seen.append(sup)
        while sup.parent is not None:
            sup = sup.parent.supervisor
            seen.append(sup)
        task_status.started()
        await trio.sleep_forever()

    inner = supervisor_spec("inner", [ChildSpec("leaf", leaf)])
    async with open_supervisor([supervisor_spec("outer", [inner])]) as root:
        assert seen[-1] is root
        assert [s.path for s in seen] == ["outer/inner", "outer", ""]
        assert root.parent is None
        handle = seen[0].parent
        assert handle is not None
        assert handle.path == "outer/inner"
    assert seen[0].parent is None  # not running any more
