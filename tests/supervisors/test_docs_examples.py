"""The examples in docs/testing.md and docs/actors.md, run as written."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from supervisors import Actor, Supervisor, actor_spec, whereis


class Room(Actor):
    async def init(self, store: list[int]) -> None:
        self.store = store

    async def handle_cast(self, msg: Any) -> None:
        self.store.append(msg)

    async def handle_call(self, _: Any) -> Any:
        return len(self.store)


async def test_room_survives_chaos(
    supervisor: Supervisor, chaos: Any, autojump_clock: trio.testing.MockClock
) -> None:
    store: list[int] = []
    await supervisor.start_child(actor_spec("room", Room, store))
    monkey = await chaos(rate=2.0, seed=7)
    for i in range(100):
        await whereis("room").cast(i)
        await trio.sleep(0.1)
    assert len(monkey.kills) > 10
    assert await whereis("room").call("count") == 100
    assert supervisor.health().ready


class Counter(Actor):
    async def init(self, start: int) -> None:
        self.n = start

    async def handle_call(self, request: Any) -> Any:
        op, k = request
        if op == "add":
            self.n += k
        return self.n

    async def handle_cast(self, message: Any) -> None:
        if message == "reset":
            self.n = 0


async def test_actors_page_example() -> None:
    from supervisors import open_supervisor

    async with open_supervisor([actor_spec("counter", Counter, 0, mailbox_size=100)]):
        ref = whereis("counter")
        assert await ref.call(("add", 1), timeout=1.0) == 1
        await ref.cast("reset")
        ref.cast_nowait("reset")
        assert await ref.call(("get", 0)) == 0
