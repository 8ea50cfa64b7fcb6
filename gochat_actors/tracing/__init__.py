"""Traces: W3C trace context on every message, trace and span IDs in every log line,
and OpenTelemetry spans when it is installed and set up (the ``otel`` extra).

Without OpenTelemetry nothing of it is imported: produced messages still carry a
``traceparent`` header beside the seed's ``trace_id`` (the same trace ID), a consumer
continues the trace from ``traceparent``, else ``trace_id``, else starts one, and log
lines carry ``trace_id`` and ``span_id``. With ``opentelemetry-api`` and a tracer
provider set, the components also make spans: ``send``/``process`` (messaging
conventions), database statements and transactions, cache operations, lock acquire
and hold, machine-ID lease steps.

Example::

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())   # before the first message: spans on
"""

from .._tracing import disable, enable, is_enabled
from .._w3c import (
    TRACEPARENT_HEADER,
    TraceParent,
    format_traceparent,
    is_w3c_trace_id,
    new_span_id,
    parse_traceparent,
)

__all__ = [
    "TRACEPARENT_HEADER",
    "TraceParent",
    "disable",
    "enable",
    "format_traceparent",
    "is_enabled",
    "is_w3c_trace_id",
    "new_span_id",
    "parse_traceparent",
]
