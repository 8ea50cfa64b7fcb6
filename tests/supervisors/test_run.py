"""``supervisors.run`` in-process: exceptions come out as themselves."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import supervisors
from supervisors import ChildSpec, RestartIntensityExceeded, open_supervisor

from ._helpers import Boom


def test_run_raises_mains_own_exception() -> None:
    # Bug 8: it came out wrapped in an ExceptionGroup.
    async def main() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        supervisors.run(main)


def test_run_raises_restart_intensity_exceeded_itself() -> None:
    async def crasher(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        raise Boom("always")

    async def main() -> None:
        async with open_supervisor([ChildSpec("c", crasher)], max_restarts=0):
            await trio.sleep_forever()

    with pytest.raises(RestartIntensityExceeded) as info:
        supervisors.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert isinstance(info.value.__cause__, Boom)


def test_run_returns_mains_result() -> None:
    async def main(x: int) -> int:
        return x + 1

    assert supervisors.run(main, 41) == 42
