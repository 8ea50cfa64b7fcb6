"""How a trio task waits for an asyncio task of the bridge (:class:`TaskWait`), and the
grace a :meth:`~gochat_actors.Bridge.cancel_grace` block gives a task whose caller was
cancelled (:class:`Graces`, :class:`Grace`); used tuned and untuned alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import (
    Any,
    Generic,
    NoReturn,
    TypeVar,
)

import trio

__all__ = ["Grace", "Graces", "TaskWait"]

T = TypeVar("T")


class Graces:
    """The tasks inside a :meth:`Bridge.cancel_grace` block (how long each may go on once
    its caller is cancelled) and the deferred cancels of those whose caller was."""

    __slots__ = ("deferred", "seconds")

    def __init__(self) -> None:
        self.seconds: dict[asyncio.Task[Any], float] = {}
        self.deferred: dict[asyncio.Task[Any], asyncio.TimerHandle] = {}

    def cancel(self, task: asyncio.Task[Any], loop: Any) -> None:
        """The caller was cancelled: cancel ``task`` now, or when its grace ends."""
        grace = self.seconds.get(task)
        if grace is None:
            task.cancel()  # then wait for it to end (its cleanup runs)
        else:  # inside a cancel_grace(): it gets that long to end on its own
            self.deferred[task] = loop.call_later(grace, task.cancel)

    def ended(self, task: asyncio.Task[Any]) -> None:
        if self.deferred:
            timer = self.deferred.pop(task, None)
            if timer is not None:
                timer.cancel()


class TaskWait(Generic[T]):
    """A trio task's wait for an asyncio task's end: :func:`trio_asyncio.run_aio_future`'s
    contract (a trio cancellation cancels the task, or defers that for a
    :class:`Graces` grace, and arrives once it has ended; its CancelledError otherwise),
    woken by the task's done callback (:meth:`done`, added by the caller)."""

    __slots__ = ("_graces", "_loop", "_task", "_waiter")

    def __init__(self, task: asyncio.Task[T], graces: Graces, loop: Any) -> None:
        self._task, self._graces, self._loop = task, graces, loop
        self._waiter: trio.lowlevel.Task | None = None

    def done(self, _: object) -> None:
        self._graces.ended(self._task)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    async def wait(self) -> T:
        task = self._task
        raise_cancel: Callable[[], NoReturn] | None = None

        def abort(raise_cancel_: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
            nonlocal raise_cancel
            raise_cancel = raise_cancel_
            self._graces.cancel(task, self._loop)
            return trio.lowlevel.Abort.FAILED

        self._waiter = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(abort)
        if raise_cancel is not None and task.cancelled():
            try:
                task.result()
            except asyncio.CancelledError:
                raise_cancel()  # trio.Cancelled, its cause the task's CancelledError
        return task.result()


class Grace:
    """The context manager of :meth:`Bridge.cancel_grace` (a class: it runs per commit)."""

    __slots__ = ("_graces", "_seconds", "_task")

    def __init__(
        self, graces: dict[asyncio.Task[Any], float], task: asyncio.Task[Any] | None, seconds: float
    ) -> None:
        self._graces, self._task, self._seconds = graces, task, seconds

    def __enter__(self) -> None:
        if self._task is not None:
            self._graces[self._task] = self._seconds

    def __exit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._graces.pop(self._task, None)
