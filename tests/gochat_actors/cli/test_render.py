"""render_tree: a rich drawing of a supervision tree's snapshot (as in docs/actors.md)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from rich.console import Console

from gochat_actors.cli import render_tree
from supervisors import Actor, ActorCrashed, actor_spec, open_supervisor, supervisor_spec, whereis


class Counter(Actor):
    async def init(self, start: int) -> None:
        self.n = start

    async def handle_cast(self, message: Any) -> None:
        self.n += 1

    async def handle_call(self, request: Any) -> Any:
        if request == "boom":
            raise RuntimeError("asked to crash")
        return self.n


async def test_the_docs_sample(autojump_clock: trio.testing.MockClock) -> None:
    children = [
        supervisor_spec("db", [actor_spec("writer", Counter, 3, mailbox_size=10)], backoff=None),
        actor_spec("c", Counter, 0),
    ]
    async with open_supervisor(children, name="app", backoff=None) as sup:
        whereis("c").cast_nowait("count")
        with pytest.raises(ActorCrashed):
            await whereis("writer").call("boom")
        await trio.sleep(2)  # uptime 2.0s everywhere
        snapshot = sup.snapshot()
    console = Console(record=True, width=120, color_system=None)
    console.print(render_tree(snapshot))
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    assert lines == [
        "app  supervisor  running  live ready",
        "├── db  supervisor  running  up 2.0s",
        "│   └── writer  actor  running  ↻1  mailbox 0/10 peak 1  up 2.0s",
        "└── c  actor  running  mailbox 0/100 peak 1  up 2.0s",
    ]
