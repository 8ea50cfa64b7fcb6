"""``gochat-actors demo``: runs ``gochat_actors.demo.main`` when that module exists, else
shows the smallest supervised tree."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any

import trio

from ._console import console

__all__ = ["run_demo"]

DEMO_MODULE = "gochat_actors.demo"


def run_demo(
    *, config: Path | None, duration: float | None, chaos: float | None, live: bool
) -> int:
    """Call ``gochat_actors.demo.main(config=, duration=, chaos=, live=)`` (run under trio
    if it is async); its int result is the exit code. Without that module, print a
    two-child tree and return 0.

    Example::

        exit_code = run_demo(config=None, duration=5.0, chaos=None, live=False)
    """
    if importlib.util.find_spec(DEMO_MODULE) is None:
        trio.run(_smallest_tree)
        return 0
    main = importlib.import_module(DEMO_MODULE).main
    options: dict[str, Any] = {"config": config, "duration": duration, "chaos": chaos, "live": live}
    if inspect.iscoroutinefunction(main):
        result = trio.run(functools.partial(main, **options))
    else:
        result = main(**options)
    return result if isinstance(result, int) else 0


async def _worker(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


async def _smallest_tree() -> None:
    from supervisors import ChildSpec, open_supervisor, render_tree

    children = [ChildSpec("greeter", _worker), ChildSpec("counter", _worker)]
    async with open_supervisor(children, name="demo") as sup:
        console().print(render_tree(sup.snapshot()))
