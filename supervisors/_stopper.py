"""The impatient stop: a second signal cuts every bounded cleanup in this run short."""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import trio

__all__ = ["hard_stop", "open_stopper", "register_stop_scope"]


class _Stopper:
    __slots__ = ("scopes", "stopped")

    def __init__(self) -> None:
        self.scopes: weakref.WeakSet[trio.CancelScope] = weakref.WeakSet()
        self.stopped = False


_stopper: contextvars.ContextVar[_Stopper | None] = contextvars.ContextVar(
    "supervisors_stopper", default=None
)


@contextmanager
def open_stopper() -> Iterator[None]:
    token = _stopper.set(_Stopper())
    try:
        yield
    finally:
        _stopper.reset(token)


def register_stop_scope(scope: trio.CancelScope) -> None:
    """Let a hard stop cancel ``scope`` (a bounded cleanup or thread wait)."""
    stopper = _stopper.get()
    if stopper is None:
        return
    if stopper.stopped:
        scope.cancel()
    else:
        stopper.scopes.add(scope)


def hard_stop() -> None:
    """Cancel every registered cleanup scope now (and any opened later in this run)."""
    stopper = _stopper.get()
    if stopper is None:
        return
    stopper.stopped = True
    for scope in list(stopper.scopes):
        scope.cancel()
