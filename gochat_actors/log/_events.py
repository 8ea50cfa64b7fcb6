"""``event_logger``: supervision events as structured log lines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from supervisors import (
    ChildExited,
    ChildOverstayed,
    ChildRestarting,
    ChildStarted,
    ChildStartFailed,
    Escalating,
    Event,
    ExitReason,
    Health,
    HealthChanged,
    ShutdownReport,
    SupervisorStarted,
    SupervisorStopped,
)

from .._dsn import mask_urls
from ._configure import get_logger

__all__ = ["EVENT_LOGGER_NAME", "event_logger"]

EVENT_LOGGER_NAME = "gochat_actors.supervision"
"""The ``logger`` field of the lines :func:`event_logger` writes by default."""

_QUIET_EXITS = (ExitReason.NORMAL, ExitReason.SHUTDOWN)
_BAD_STOPS = ("escalated", "start failed")

Line = tuple[str, str, dict[str, Any]]  # level, message, fields


def event_logger(
    logger: structlog.stdlib.BoundLogger | None = None,
) -> Callable[[Event], None]:
    """A supervision event hook that writes one log line per event.

    Levels: ``info`` for starts, stops and health back to OK; ``warning`` for crashes,
    failed starts, restarts and degraded/failed health; ``error`` for escalations,
    overstays and a supervisor that stopped because it gave up. Fields:
    ``supervision`` (the event type), ``path``, and by event ``reason``, ``error_type``,
    ``error``, ``delay``, ``attempt``, ``cause``, ``incarnation``, ``budget``...
    URL passwords in error texts are masked even when logging is not configured.

    Example::

        async with open_supervisor(children, on_event=event_logger()) as sup:
            ...   # {"event": "child restarting", "path": "db", "delay": 0.5, ...}
    """
    log = logger if logger is not None else get_logger(EVENT_LOGGER_NAME)

    def hook(event: Event) -> None:
        level, message, fields = _describe(event)
        getattr(log, level)(message, supervision=type(event).__name__, **fields)

    return hook


def _error(exc: BaseException | None) -> dict[str, Any]:
    if exc is None:
        return {}
    return {"error_type": type(exc).__name__, "error": mask_urls(str(exc))}


def _describe(event: Event) -> Line:
    match event:
        case ChildStarted():
            return "info", "child started", {"path": event.path, "incarnation": event.incarnation}
        case ChildStartFailed():
            return (
                "warning",
                "child failed to start",
                {"path": event.path, **_error(event.exception)},
            )
        case ChildExited():
            fields = {
                "path": event.path,
                "reason": event.reason.value,
                "incarnation": event.incarnation,
                "will_restart": event.will_restart,
                **_error(event.exception),
            }
            if event.reason in _QUIET_EXITS and event.exception is None:
                return "info", "child stopped", fields
            return "warning", "child crashed", fields
        case ChildRestarting():
            fields = {
                "path": event.path,
                "delay": round(event.delay, 3),
                "attempt": event.attempt,
                "cause": event.cause,
            }
            return "warning", "child restarting", fields
        case HealthChanged():
            level = "info" if event.status is Health.OK else "warning"
            fields = {"path": event.path, "status": event.status.value}
            if event.reason:
                fields["reason"] = mask_urls(event.reason)
            return level, "child health changed", fields
        case ChildOverstayed():
            fields = {"path": event.path, "budget": event.budget, "stack": "".join(event.stack)}
            return "error", "child overstayed its shutdown budget", fields
        case Escalating():
            fields = {
                "path": event.path,
                "restarts": event.restarts,
                "window": event.window,
                **_error(event.exception),
            }
            return "error", "supervisor giving up: restart intensity exceeded", fields
        case SupervisorStarted():
            return (
                "info",
                "supervisor started",
                {"path": event.supervisor, "children": event.children},
            )
        case SupervisorStopped():
            level = "error" if event.reason in _BAD_STOPS else "info"
            return level, "supervisor stopped", {"path": event.supervisor, "reason": event.reason}
        case ShutdownReport():
            if event.clean:
                return "debug", "supervisor shutdown clean", {"path": event.supervisor}
            fields = {
                "path": event.supervisor,
                "duration": round(event.duration, 3),
                "overstayed": [o.path for o in event.overstayed],
            }
            return "error", "supervisor shutdown overstayed", fields
    return "debug", "supervision event", {"path": event.supervisor}
