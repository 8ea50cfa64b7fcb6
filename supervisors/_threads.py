"""Blocking work in a thread, abandoned at the child's shutdown deadline."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

import outcome
import trio

from ._child import _current_child
from ._stopper import register_stop_scope

__all__ = ["to_thread"]

T = TypeVar("T")


async def to_thread(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` in a worker thread and return its result.

    If the calling child is stopped meanwhile, the thread is given until the end of the
    child's shutdown budget; then it is abandoned (left to finish on its own, its result
    discarded) and the child is reported as having overstayed. Any other cancellation
    (the caller's own timeout) abandons the thread at once, like
    ``trio.to_thread.run_sync(abandon_on_cancel=True)``, and is no overstay.

    Example::

        digest = await supervisors.to_thread(hashlib.sha256, big_bytes)
    """
    done = trio.Event()
    box: list[outcome.Outcome[T]] = []
    token = trio.lowlevel.current_trio_token()

    def deliver(result: outcome.Outcome[T]) -> None:
        def set_result() -> None:
            box.append(result)
            done.set()

        with contextlib.suppress(trio.RunFinishedError):  # the run ended first
            token.run_sync_soon(set_result)

    def work() -> T:
        return fn(*args)

    trio.lowlevel.start_thread_soon(work, deliver)
    try:
        await done.wait()
    except trio.Cancelled:
        handle = _current_child.get()
        if handle is None or not handle.stopping:
            raise  # the caller's own timeout or cancellation: abandon the thread at once
        with trio.move_on_at(handle.stop_deadline, shield=True) as scope:
            register_stop_scope(scope)
            await done.wait()
        if not done.is_set():
            handle._abandoned += 1  # still running past the stop's deadline: an overstay
        raise
    return box[0].unwrap()
