"""A canonical trace of supervision events, hashable to compare replays."""

from __future__ import annotations

import hashlib
from typing import Any

from .._events import (
    ChildExited,
    ChildRestarting,
    ChildStarted,
    ChildStartFailed,
    Event,
    HealthChanged,
    SupervisorStopped,
)

__all__ = ["EventTrace"]


class EventTrace:
    """Records events (use it as ``on_event=`` or ``sup.subscribe(trace)``).

    :meth:`digest` hashes the trace with times relative to the first event and events
    that share one virtual instant put in a canonical order, so two runs from the same
    seed under ``MockClock`` give the same digest. Each row records what tells runs
    apart: exit reasons, exception types, incarnations, restart delays and causes,
    health statuses, stop reasons.

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
        detail = ""
        if isinstance(event, ChildExited):
            detail = (
                f"{event.reason.value}:{type(event.exception).__name__}:{event.will_restart}"
                f":{event.incarnation}"
            )
        elif isinstance(event, ChildRestarting):
            detail = f"{event.delay:.6f}:{event.cause}:{event.attempt}"
        elif isinstance(event, ChildStarted):
            detail = str(event.incarnation)
        elif isinstance(event, ChildStartFailed):
            detail = type(event.exception).__name__
        elif isinstance(event, HealthChanged):
            detail = f"{event.status.value}:{event.reason}"
        elif isinstance(event, SupervisorStopped):
            detail = event.reason
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
