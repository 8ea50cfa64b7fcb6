"""Trace IDs in contextvars (structlog's), so every log line of a unit of work carries one.

trio copies the context into each new task, so a trace bound in a task is seen by the
tasks it starts afterwards, and by asyncio code it runs through the bridge.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

__all__ = [
    "SPAN_ID_KEY",
    "TRACE_ID_KEY",
    "SpanToken",
    "TraceToken",
    "bind_trace_id",
    "current_span_id",
    "current_trace_id",
    "new_trace_id",
    "reset_span",
    "reset_trace_id",
    "set_span",
    "set_trace_id",
    "trace_context",
]

TRACE_ID_KEY = "trace_id"
"""The log field (and contextvar key) of the trace ID."""

SPAN_ID_KEY = "span_id"
"""The log field (and contextvar key) of the current span ID (16 hex digits, W3C)."""

TraceToken = contextvars.Token
"""What :func:`set_trace_id` returns and :func:`reset_trace_id` takes."""

SpanToken = tuple[contextvars.Token[Any], contextvars.Token[Any]]
"""What :func:`set_span` returns and :func:`reset_span` takes."""


def _structlog_var(key: str = TRACE_ID_KEY) -> contextvars.ContextVar[Any]:
    """The context variable structlog keeps ``key`` in (public APIs only:
    ``bind_contextvars`` returns tokens, ``Token.var`` is the variable). structlog
    creates it once per key and keeps it: it is the same for the life of the process."""
    tokens = structlog.contextvars.bind_contextvars(**{key: None})
    structlog.contextvars.reset_contextvars(**tokens)
    var: contextvars.ContextVar[Any] = tokens[key].var
    return var


_TRACE_VAR = _structlog_var()
_SPAN_VAR = _structlog_var(SPAN_ID_KEY)


def new_trace_id() -> str:
    """A fresh random trace ID: 32 lowercase hex digits (16 random bytes, as a W3C
    trace-id).

    Example::

        >>> len(new_trace_id())
        32
    """
    return os.urandom(16).hex()


def _checked(trace_id: str) -> str:
    if type(trace_id) is str and 0 < len(trace_id) <= 128 and trace_id.isprintable():
        return trace_id  # the fast path
    if not isinstance(trace_id, str) or not trace_id or len(trace_id) > 128:
        raise ValueError("trace_id must be a non-empty str of at most 128 characters")
    if not trace_id.isprintable():
        raise ValueError("trace_id must be printable")
    return trace_id


def set_trace_id(trace_id: str) -> TraceToken[Any]:
    """Bind ``trace_id`` in the current context; return the token that
    :func:`reset_trace_id` takes to restore what was bound before.

    What :func:`trace_context` does, without a generator or a dict per call: for loops
    that bind a trace per item (a consumer's messages). Always reset in a ``finally``.

    Example::

        token = set_trace_id(msg.trace_id)
        try:
            await handle(msg)        # its log lines carry msg.trace_id
        finally:
            reset_trace_id(token)
    """
    if type(trace_id) is str and 0 < len(trace_id) <= 128 and trace_id.isprintable():
        return _TRACE_VAR.set(trace_id)  # the per-message path: no further call
    return _TRACE_VAR.set(_checked(trace_id))


def reset_trace_id(token: TraceToken[Any]) -> None:
    """Restore the trace ID bound before the :func:`set_trace_id` that returned ``token``
    (in the same context; a token is used once).

    Example::

        token = set_trace_id("abc")
        reset_trace_id(token)        # back to the previous trace ID, or none
    """
    _TRACE_VAR.reset(token)


def set_span(trace_id: str, span_id: str | None) -> SpanToken:
    """Bind ``trace_id`` and ``span_id`` (the span this work runs in) in the current
    context; return the token :func:`reset_span` takes. A consumer binds each message's
    trace and its processing span with it; ``trace_id`` is checked as in
    :func:`set_trace_id`, ``span_id`` is the caller's (None: no span).

    Example::

        token = set_span(msg.trace_id, "00f067aa0ba902b7")
        try:
            await handle(msg)        # its log lines carry trace_id and span_id
        finally:
            reset_span(token)
    """
    if not (type(trace_id) is str and 0 < len(trace_id) <= 128 and trace_id.isprintable()):
        trace_id = _checked(trace_id)
    return (_TRACE_VAR.set(trace_id), _SPAN_VAR.set(span_id))


def reset_span(token: SpanToken) -> None:
    """Restore the trace and span IDs bound before the :func:`set_span` that returned
    ``token``.

    Example::

        token = set_span(new_trace_id(), None)
        reset_span(token)
    """
    _SPAN_VAR.reset(token[1])
    _TRACE_VAR.reset(token[0])


def current_span_id() -> str | None:
    """The span ID bound in the current context (by :func:`set_span`), or None.

    Example::

        log.info("done", parent=current_span_id())
    """
    value = _SPAN_VAR.get(None)
    return value if isinstance(value, str) else None


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
    value = _TRACE_VAR.get(None)
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
