"""Trace IDs in contextvars (structlog's), so every log line of a unit of work carries one.

trio copies the context into each new task, so a trace bound in a task is seen by the
tasks it starts afterwards, and by asyncio code it runs through the bridge.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

__all__ = ["TRACE_ID_KEY", "bind_trace_id", "current_trace_id", "new_trace_id", "trace_context"]

TRACE_ID_KEY = "trace_id"
"""The log field (and contextvar key) of the trace ID."""


def new_trace_id() -> str:
    """A fresh random trace ID: 32 lowercase hex digits (W3C trace-id shaped).

    Example::

        >>> len(new_trace_id())
        32
    """
    return uuid.uuid4().hex


def _checked(trace_id: str) -> str:
    if not isinstance(trace_id, str) or not trace_id or len(trace_id) > 128:
        raise ValueError("trace_id must be a non-empty str of at most 128 characters")
    if not trace_id.isprintable():
        raise ValueError("trace_id must be printable")
    return trace_id


def bind_trace_id(trace_id: str) -> None:
    """Bind ``trace_id`` for the rest of the current context (task).

    Prefer :func:`trace_context`, which restores the previous one on exit.

    Example::

        bind_trace_id(msg.headers["trace_id"])
        log.info("processing")   # {... "trace_id": "..."}
    """
    structlog.contextvars.bind_contextvars(**{TRACE_ID_KEY: _checked(trace_id)})


def current_trace_id() -> str | None:
    """The trace ID bound in the current context, or None.

    Example::

        headers = {"trace_id": current_trace_id() or new_trace_id()}
    """
    value = structlog.contextvars.get_contextvars().get(TRACE_ID_KEY)
    return value if isinstance(value, str) else None


@contextmanager
def trace_context(trace_id: str | None = None) -> Iterator[str]:
    """Bind a trace ID (a new one when None) inside the ``with`` block; yields it.

    The previous trace ID (or none) is restored on exit.

    Example::

        with trace_context() as trace_id:
            log.info("request received")   # carries trace_id
    """
    value = new_trace_id() if trace_id is None else _checked(trace_id)
    tokens = structlog.contextvars.bind_contextvars(**{TRACE_ID_KEY: value})
    try:
        yield value
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
