"""A canonical trace of supervision events, hashable to compare replays."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from typing import Any

from .._events import Event

__all__ = ["EventTrace"]

# Not part of what a run did: where (already in the row), when (the row's time), and
# stacks (they name source lines, which change with the code, not with the run).
_LEFT_OUT = frozenset({"supervisor", "child", "time", "stack"})


def _plain(value: Any) -> Any:
    """A stable, comparable form of one event field."""
    if isinstance(value, BaseException):
        return type(value).__name__
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, tuple | list):
        return tuple(_plain(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(
            (f.name, _plain(getattr(value, f.name)))
            for f in dataclasses.fields(value)
            if f.name not in _LEFT_OUT
        )
    return value


class EventTrace:
    """Records events (use it as ``on_event=`` or ``sup.subscribe(trace)``).

    Each row keeps what tells one run from another: the event's type, path and every
    field (exception types, exit and stop reasons, incarnations, health, restart
    delays, budgets), with times relative to the first event. :meth:`digest` hashes the
    rows with events that share one virtual instant put in a canonical order, so two
    runs from the same seed under ``MockClock`` give the same digest.

    Example::

        trace = EventTrace()
        async with open_supervisor(specs, on_event=trace, seed=1): ...
        print(trace.digest())
    """

    def __init__(self) -> None:
        self.rows: list[tuple[float, str, str, str]] = []
        self._t0: float | None = None

    def __call__(self, event: Event) -> None:
        if self._t0 is None:
            self._t0 = event.time
        path = getattr(event, "path", event.supervisor)
        detail = repr(_plain(event))
        self.rows.append((round(event.time - self._t0, 6), type(event).__name__, path, detail))

    def canonical(self) -> list[tuple[Any, ...]]:
        """The rows sorted by time, ties broken by content."""
        return sorted(self.rows)

    def digest(self) -> str:
        """A SHA-256 hex digest of :meth:`canonical`."""
        h = hashlib.sha256()
        for row in self.canonical():
            h.update(repr(row).encode())
        return h.hexdigest()
