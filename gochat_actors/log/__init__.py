"""Structured logs: structlog (JSON lines or console), trace IDs in contextvars, stdlib
logging routed through the same processors; ``[log]`` settings.

Example::

    from gochat_actors import log

    log.configure(settings.log, service=settings.service.name)
    logger = log.get_logger(__name__)
    with log.trace_context():
        logger.info("message stored", conversation=cid)
"""

from ._configure import configure, configured, get_logger, is_configured, reset
from ._events import EVENT_LOGGER_NAME, event_logger
from ._processors import SECRET_KEYS, add_service, is_secret_key, order_keys, redact_secrets
from ._settings import LogFormat, LogLevel, LogSettings
from ._trace import (
    SPAN_ID_KEY,
    TRACE_ID_KEY,
    SpanToken,
    TraceToken,
    bind_trace_id,
    current_span_id,
    current_trace_id,
    new_trace_id,
    reset_span,
    reset_trace_id,
    set_span,
    set_trace_id,
    trace_context,
)

__all__ = [
    "EVENT_LOGGER_NAME",
    "SECRET_KEYS",
    "SPAN_ID_KEY",
    "TRACE_ID_KEY",
    "LogFormat",
    "LogLevel",
    "LogSettings",
    "SpanToken",
    "TraceToken",
    "add_service",
    "bind_trace_id",
    "configure",
    "configured",
    "current_span_id",
    "current_trace_id",
    "event_logger",
    "get_logger",
    "is_configured",
    "is_secret_key",
    "new_trace_id",
    "order_keys",
    "redact_secrets",
    "reset",
    "reset_span",
    "reset_trace_id",
    "set_span",
    "set_trace_id",
    "trace_context",
]
