"""The span maker over OpenTelemetry's API: imported only when spans are on.

Spans follow OpenTelemetry's semantic conventions: ``messaging.*`` for Kafka (send and
process), ``db.*`` for statements and transactions, ``db.system=redis`` for the cache
and locks. Where no OpenTelemetry span is current but a W3C trace ID is bound in the
log context (a consumer's message, ``log.trace_context()``), a span joins that trace
under a remote parent, so the trace IDs in logs, headers and spans stay one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util.types import AttributeValue

from ._version import __version__
from ._w3c import TRACEPARENT_HEADER, is_w3c_trace_id, new_span_id
from .log import current_trace_id, reset_span, set_span

__all__ = ["Spans", "provider_is_set"]

KINDS = {
    "client": SpanKind.CLIENT,
    "internal": SpanKind.INTERNAL,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}


def provider_is_set(provider: object) -> bool:
    """Whether ``provider`` records anything: not the API's placeholders (the proxy
    that stands in until one is set, or the no-op one)."""
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


class _HeaderGetter(Getter[Mapping[str, bytes]]):
    """Reads a message's headers (``str`` -> ``bytes``) for a propagator."""

    def get(self, carrier: Mapping[str, bytes], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value.decode("latin-1")]

    def keys(self, carrier: Mapping[str, bytes]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderGetter()


def _remote_parent(trace_id: str) -> otel_context.Context:
    """A context whose parent is a remote span of ``trace_id``: a span started in it
    belongs to that trace (OpenTelemetry takes a trace ID only from a parent)."""
    parent = SpanContext(
        int(trace_id, 16), int(new_span_id(), 16), True, TraceFlags(TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(NonRecordingSpan(parent), otel_context.Context())


class Span:
    """One span as a ``with`` block: current (OpenTelemetry's context and the log's
    ``span_id``) inside it; an ``Exception`` leaving it marks it failed."""

    __slots__ = ("_log", "_otel", "span")

    def __init__(
        self, span: trace.Span, trace_id: str | None, context: otel_context.Context | None = None
    ) -> None:
        self.span = span
        ids = span.get_span_context()
        self._otel = otel_context.attach(trace.set_span_in_context(span, context))
        self._log = set_span(trace_id or format(ids.trace_id, "032x"), format(ids.span_id, "016x"))

    def set(self, key: str, value: AttributeValue) -> None:
        self.span.set_attribute(key, value)

    def __enter__(self) -> Span:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end(exc)

    def end(self, exc: BaseException | None) -> None:
        try:
            # trio.Cancelled & co. are not failures of the operation: the span just ends
            if isinstance(exc, Exception):
                self.span.record_exception(exc)
                self.span.set_attribute("error.type", type(exc).__qualname__)
                self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            reset_span(self._log)
            otel_context.detach(self._otel)
            self.span.end()


class Spans:
    """Makes the library's spans with one tracer of ``provider``."""

    def __init__(self, provider: Any) -> None:
        self.tracer = provider.get_tracer("gochat_actors", __version__)

    def start(self, name: str, kind: str, attributes: dict[str, AttributeValue]) -> Span:
        """A span in the current trace: the current span's child, else a child of the
        trace bound in the log context (when it is W3C-shaped), else a new trace."""
        context = None
        bound = current_trace_id()  # the log keeps it, W3C-shaped or not
        if (
            bound is not None
            and is_w3c_trace_id(bound)
            and not trace.get_current_span().get_span_context().is_valid
        ):
            context = _remote_parent(bound)
        span = self.tracer.start_span(name, context, KINDS[kind], attributes)
        return Span(span, bound)

    def leave(self) -> None:
        """No current span from here on in this context (never detached: the caller's
        context is a task's own copy)."""
        otel_context.attach(otel_context.Context())

    def current_ids(self) -> tuple[str, str, bool] | None:
        """The current span's trace ID, span ID and sampled flag, if there is one."""
        ids = trace.get_current_span().get_span_context()
        if not ids.is_valid:
            return None
        return format(ids.trace_id, "032x"), format(ids.span_id, "016x"), ids.trace_flags.sampled

    def process(
        self,
        trace_id: str,
        headers: Mapping[str, bytes],
        name: str,
        attributes: dict[str, AttributeValue],
    ) -> Span:
        """A consumer's processing span for one message: the child of the span its
        ``traceparent`` names (read by the global propagator, so baggage and custom
        propagators work), else of its W3C ``trace_id``, else a new trace."""
        context = _parent(trace_id, headers)
        span = self.tracer.start_span(name, context, SpanKind.CONSUMER, attributes)
        return Span(span, trace_id, context)

    def process_batch(
        self,
        messages: Sequence[tuple[str, Mapping[str, bytes]]],
        name: str,
        attributes: dict[str, AttributeValue],
    ) -> Span:
        """A consumer's processing span for a batch (``(trace_id, headers)`` of each
        message): a trace of its own, linked to the span each message continues (as
        :meth:`process` would make it its parent), the messaging conventions' batch form."""
        links = []
        for trace_id, headers in messages:
            ids = trace.get_current_span(_parent(trace_id, headers)).get_span_context()
            if ids.is_valid:
                links.append(Link(ids))
        root = otel_context.Context()
        span = self.tracer.start_span(name, root, SpanKind.CONSUMER, attributes, links)
        return Span(span, None, root)


def _parent(trace_id: str, headers: Mapping[str, bytes]) -> otel_context.Context:
    """The context a message's processing continues: the span its ``traceparent`` names
    (read by the global propagator), else its W3C ``trace_id``, else none (a new trace)."""
    if TRACEPARENT_HEADER in headers:
        context = propagate.extract(headers, otel_context.Context(), _GETTER)
        if trace.get_current_span(context).get_span_context().is_valid:
            return context
    return _remote_parent(trace_id) if is_w3c_trace_id(trace_id) else otel_context.Context()
