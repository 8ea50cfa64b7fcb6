"""Small building blocks shared by the supervisors tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from supervisors import Event, Supervisor


class Boom(Exception):
    """The failure the tests inject."""


class Recorder:
    """Collects every event of a supervisor (sync hook) for assertions."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def attach(self, sup: Supervisor) -> Recorder:
        sup.subscribe(self)
        return self


class Controlled:
    """A child whose life the test drives: ``crash(id)`` makes its current run raise.

    It records the order of starts and stops, so tests can check ordering rules.
    """

    def __init__(self) -> None:
        self.log: list[str] = []
        self.crashers: dict[str, trio.Event] = {}
        self.starts: dict[str, int] = {}
        self.fail_start: dict[str, int] = {}

    async def __call__(
        self, name: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.starts[name] = self.starts.get(name, 0) + 1
        if self.fail_start.get(name, 0) > 0:
            self.fail_start[name] -= 1
            raise Boom(f"{name} cannot start")
        crash = trio.Event()
        self.crashers[name] = crash
        self.log.append(f"start {name}")
        task_status.started(name)
        try:
            await crash.wait()
        finally:
            self.log.append(f"stop {name}")
        raise Boom(f"{name} crashed")

    def crash(self, name: str) -> None:
        self.crashers[name].set()


async def until(
    sup: Supervisor, predicate: Callable[[], bool], *, timeout: float = 60.0, poll: float = 0.01
) -> None:
    """Wait until ``predicate()`` holds, re-checking it on every event of ``sup``'s tree
    and every ``poll`` seconds; ``TooSlowError`` after ``timeout`` seconds (virtual
    under ``autojump_clock``, so a predicate that never holds fails fast, not hangs).
    """
    if predicate():
        return
    reached = trio.Event()

    def check(event: Event) -> None:
        if predicate():
            reached.set()

    unsubscribe = sup.subscribe(check)
    try:
        with trio.fail_after(timeout):
            while not reached.is_set():
                with trio.move_on_after(poll):
                    await reached.wait()
                if predicate():
                    return
    finally:
        unsubscribe()
