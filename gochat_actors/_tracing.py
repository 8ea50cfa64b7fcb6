"""Traces, the engine under :mod:`gochat_actors.tracing`: whether spans are on (one
record, set once), and the hooks the components call, each a few lines at its call site.

Spans are on when :func:`enable` was called, or when the first hook finds OpenTelemetry
already imported with a tracer provider set. Without OpenTelemetry imported by someone
else, nothing here imports it: without the ``otel`` extra, or with it and no tracing set
up, a hook costs an attribute read and returns :data:`NO_SPAN` (a shared no-op);
attributes are built only when spans are on.
"""

from __future__ import annotations

import contextvars
import os
import sys
from collections.abc import Mapping, Sequence
from os import urandom
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from ._exceptions import TracingUnavailable
from ._w3c import is_w3c_trace_id
from .log import SPAN_ID_KEY, TRACE_ID_KEY, SpanToken, new_trace_id

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from ._otel import Span, Spans

__all__ = [
    "NO_SPAN",
    "SPANS",
    "TRACE_IDS_KEY",
    "BatchToken",
    "MessageBinding",
    "SpanLike",
    "batch_ended",
    "batch_started",
    "cache_span",
    "db_statement_span",
    "db_transaction_span",
    "disable",
    "enable",
    "idgen_event",
    "idgen_span",
    "is_enabled",
    "leave_trace",
    "lock_span",
    "message_binding",
    "message_trace",
    "process_ended",
    "process_started",
    "reset_trace_ids",
    "send_span",
    "set_trace_ids",
    "spans",
]


class _Switch:
    __slots__ = ("checked", "on")

    def __init__(self) -> None:
        self.checked = False  # the global tracer provider was looked at (or enable() ran)
        self.on: Spans | None = None  # the span maker, when spans are on


SPANS = _Switch()
"""The switch (``SPANS.on`` is the span maker or None); hooks read it directly."""


def spans() -> Spans | None:
    """The span maker when spans are on, else None (the first call looks once)."""
    if SPANS.checked:
        return SPANS.on
    SPANS.checked = True
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:  # nobody imported OpenTelemetry: no tracer provider can be set
        return None
    from ._otel import Spans, provider_is_set

    provider = trace.get_tracer_provider()
    if provider_is_set(provider):
        SPANS.on = Spans(provider)
    return SPANS.on


def enable(tracer_provider: Any = None) -> None:
    """Turn spans on: from ``tracer_provider``, else from OpenTelemetry's global one
    (set now or later: OpenTelemetry's proxy follows it). Raises
    :class:`~gochat_actors.TracingUnavailable` when ``opentelemetry-api`` is not
    installed (``pip install 'gochat-actors[otel]'``).

    Spans also turn on by themselves when a global tracer provider is set before the
    first traced call (a message, a statement): ``enable`` is for the other orders, and
    for tests that bring their own provider.

    Example::

        from opentelemetry.sdk.trace import TracerProvider
        from gochat_actors import tracing

        tracing.enable(TracerProvider())
    """
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise TracingUnavailable(
            "OpenTelemetry is not installed: pip install 'gochat-actors[otel]'"
        ) from exc
    from ._otel import Spans

    SPANS.on = Spans(trace.get_tracer_provider() if tracer_provider is None else tracer_provider)
    SPANS.checked = True


def disable() -> None:
    """Turn spans off (the W3C headers and log IDs stay: they need no OpenTelemetry).

    Example::

        tracing.disable()
    """
    SPANS.on = None
    SPANS.checked = True


def is_enabled() -> bool:
    """Whether spans are on (looking at the global tracer provider if not done yet).

    Example::

        if tracing.is_enabled():
            print("spans go to", type(trace.get_tracer_provider()).__name__)
    """
    return spans() is not None


class SpanLike(Protocol):
    """A span as the components use it: a ``with`` block, attributes set inside."""

    def set(self, key: str, value: Any) -> None: ...

    def __enter__(self) -> SpanLike: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class _NoSpan:
    __slots__ = ()

    def set(self, key: str, value: Any) -> None:
        pass

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


NO_SPAN = _NoSpan()
"""What every hook returns while spans are off."""


def _on() -> Any:
    return SPANS.on if SPANS.checked else spans()


def leave_trace() -> None:
    """Leave OpenTelemetry's current span in this task (its own context copy): a child
    actor started from inside a span must not make all its work that span's."""
    on = _on()
    if on is not None:
        on.leave()


# -- the per-message path: span IDs from a pool, context variables set directly --------
_span_ids: list[str] = []
_ZERO_SPAN = "0" * 16
if hasattr(os, "register_at_fork"):  # a forked child must not hand out its parent's IDs
    os.register_at_fork(after_in_child=_span_ids.clear)


def _more_span_ids() -> str:
    """Refill the pool: 257 random span IDs from one read of the OS's randomness, split
    in C (``hex`` with a separator every 8 bytes: no Python-level slice per ID); returns
    one of them."""
    ids = urandom(8 * 257).hex(" ", 8).split()
    if _ZERO_SPAN in ids:  # invalid in W3C; one chance in 2**64 per ID
        ids = [i for i in ids if i != _ZERO_SPAN]
        if not ids:
            return _more_span_ids()
    first = ids.pop()
    _span_ids[:] = ids
    return first


def _structlog_var(key: str) -> contextvars.ContextVar[Any]:
    """The context variable structlog keeps ``key`` in: the one :mod:`gochat_actors.log`
    binds (structlog makes one per key, for the life of the process)."""
    tokens = structlog.contextvars.bind_contextvars(**{key: None})
    structlog.contextvars.reset_contextvars(**tokens)
    var: contextvars.ContextVar[Any] = tokens[key].var
    return var


_TRACE_VAR = _structlog_var(TRACE_ID_KEY)
_SPAN_VAR = _structlog_var(SPAN_ID_KEY)
_get_trace = _TRACE_VAR.get
_set_trace = _TRACE_VAR.set
_reset_trace = _TRACE_VAR.reset
_set_span = _SPAN_VAR.set
_reset_span = _SPAN_VAR.reset
_w3c_seen = [""]  # the last trace ID found W3C-shaped: one check per trace, not per send


# -- mq ----------------------------------------------------------------------------------
def message_trace(trace_id: str | None = None) -> tuple[bytes, bytes | None]:
    """A produced message's ``trace_id`` and ``traceparent`` header values.

    The trace: ``trace_id``, else the current span's (spans on), else the log context's,
    else a new one. The parent span: the current span (spans on: the ``send`` span),
    else a new span ID. No ``traceparent`` when the trace ID is not W3C-shaped (a
    ``trace_id`` from elsewhere, e.g. ``"req-7"``): only the seed's header then.
    """
    if SPANS.on is not None or not SPANS.checked:
        on = spans()
        ids = None if on is None else on.current_ids()
        if ids is not None and (trace_id is None or trace_id == ids[0]):
            flags = "01" if ids[2] else "00"
            return ids[0].encode(), f"00-{ids[0]}-{ids[1]}-{flags}".encode()
    if trace_id is None:
        trace_id = _get_trace(None)
        if type(trace_id) is not str:  # nothing bound: a new trace (W3C-shaped: no check)
            trace_id = new_trace_id()
            span_id = _span_ids.pop() if _span_ids else _more_span_ids()
            return trace_id.encode(), f"00-{trace_id}-{span_id}-01".encode()
    if trace_id is not _w3c_seen[0]:
        if not is_w3c_trace_id(trace_id):
            return trace_id.encode(), None
        _w3c_seen[0] = trace_id
    span_id = _span_ids.pop() if _span_ids else _more_span_ids()
    return trace_id.encode(), f"00-{trace_id}-{span_id}-01".encode()


def send_span(topic: str, partition: int | None = None, count: int = 1) -> SpanLike:
    """``send <topic>`` (kind producer) around a send, from the call to the broker's
    acknowledgement; its span ID is the messages' ``traceparent`` parent."""
    on = SPANS.on if SPANS.checked else spans()
    if on is None:
        return NO_SPAN
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
    }
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    if count != 1:
        attributes["messaging.batch.message_count"] = count
    span: SpanLike = on.start(f"send {topic}", "producer", attributes)
    return span


class _Message(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, bytes]: ...
    @property
    def trace_id(self) -> str: ...


def process_started(msg: _Message, group: str) -> SpanToken | Span:
    """Bind a consumed message's trace and a processing span (logs carry both IDs);
    with spans on, start ``process <topic>`` (kind consumer), the child of the span its
    ``traceparent`` names. Always paired with :func:`process_ended` in a ``finally``."""
    if SPANS.on is None and SPANS.checked:  # spans off: two context variables set
        # msg.trace_id is checked already (Message.from_record): no check again
        span_id = _span_ids.pop() if _span_ids else _more_span_ids()
        return (_set_trace(msg.trace_id), _set_span(span_id))
    on = spans()
    if on is None:  # the first call of the process looked: off
        return process_started(msg, group)
    span: Span = on.process(
        msg.trace_id,
        msg.headers,
        f"process {msg.topic}",
        {
            "messaging.system": "kafka",
            "messaging.destination.name": msg.topic,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.consumer.group.name": group,
            "messaging.destination.partition.id": str(msg.partition),
            "messaging.kafka.offset": msg.offset,
        },
    )
    return span


def process_ended(token: SpanToken | Span, error: BaseException | None) -> None:
    """End what :func:`process_started` began (``error``: the processor's, if any)."""
    if type(token) is tuple:
        _reset_span(token[1])
        _reset_trace(token[0])
    else:
        token.end(error)  # type: ignore[union-attr]  # a Span: the only other kind


class MessageBinding:
    """Spans off: what :func:`process_started` and :func:`process_ended` do for a run of
    messages processed one after another in one task, with the undoing done once.

    :meth:`bind` binds a message's trace ID and a new span ID (the log context then
    holds what :func:`process_started` binds); :meth:`unbind` gives the log context back
    what it held before the first :meth:`bind` since the last :meth:`unbind`. Between two
    messages' binds nothing is reset: the next bind replaces both IDs. Call
    :meth:`unbind` before any work of the run's own (a retry, a dead letter) and in a
    ``finally``. Made by :func:`message_binding`.

    Example::

        binding = message_binding()
        if binding is not None:
            try:
                for msg in msgs:
                    binding.bind(msg.trace_id)
                    await processor(msg)
            finally:
                binding.unbind()
    """

    __slots__ = ("_first",)

    def __init__(self) -> None:
        self._first: SpanToken | None = None

    def bind(self, trace_id: str) -> None:
        """Bind ``trace_id`` (checked: :meth:`Message.from_record
        <gochat_actors.mq.Message.from_record>`) and a new span ID."""
        trace = _set_trace(trace_id)
        span = _set_span(_span_ids.pop() if _span_ids else _more_span_ids())
        if self._first is None:
            self._first = (trace, span)

    def unbind(self) -> None:
        """Restore the IDs bound before the first :meth:`bind` (no-op without one)."""
        first = self._first
        if first is not None:
            self._first = None
            _reset_span(first[1])
            _reset_trace(first[0])


def message_binding() -> MessageBinding | None:
    """A :class:`MessageBinding` when spans are off, else None (then each message needs
    :func:`process_started`: its own ``process`` span)."""
    return MessageBinding() if _on() is None else None


TRACE_IDS_KEY = "trace_ids"
"""The log key listing the trace IDs of the messages of a batch being processed."""

_TRACE_IDS_VAR = _structlog_var(TRACE_IDS_KEY)


def set_trace_ids(msgs: Sequence[_Message]) -> contextvars.Token[Any]:
    """Bind ``trace_ids``, the list of ``msgs``' trace IDs, in the log context (for a
    batch processor's call); undo with :func:`reset_trace_ids`.

    Example::

        token = set_trace_ids([msg])
        try:
            await batch_processor([msg])
        finally:
            reset_trace_ids(token)
    """
    return _TRACE_IDS_VAR.set([m.trace_id for m in msgs])


def reset_trace_ids(token: contextvars.Token[Any]) -> None:
    """Undo :func:`set_trace_ids`."""
    _TRACE_IDS_VAR.reset(token)


class BatchToken:
    """What :func:`batch_started` began: the batch's trace and span, and its list of
    trace IDs in the log context."""

    __slots__ = ("ids", "inner")

    def __init__(self, inner: SpanToken | Span, ids: contextvars.Token[Any] | None = None) -> None:
        self.inner = inner
        self.ids = ids


def batch_started(msgs: Sequence[_Message], group: str) -> BatchToken:
    """Bind a batch's own log context: a trace of its own (a batch of one: its message's,
    as :func:`process_started`), a span, and ``trace_ids`` listing each message's trace
    ID (the messages keep theirs: ``msg.trace_id``); with spans on, a ``process <topic>``
    span (kind consumer) of a trace of its own, counting them and linked to each
    message's parent span. Paired with :func:`batch_ended` in a ``finally``."""
    ids = set_trace_ids(msgs)  # a batch of one too: a log query on trace_ids finds it
    if len(msgs) == 1:
        return BatchToken(process_started(msgs[0], group), ids)
    on = _on()
    if on is None:
        span_id = _span_ids.pop() if _span_ids else _more_span_ids()
        return BatchToken((_set_trace(new_trace_id()), _set_span(span_id)), ids)
    first = msgs[0]
    span: Span = on.process_batch(
        [(m.trace_id, m.headers) for m in msgs],
        f"process {first.topic}",
        {
            "messaging.system": "kafka",
            "messaging.destination.name": first.topic,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.consumer.group.name": group,
            "messaging.destination.partition.id": str(first.partition),
            "messaging.kafka.offset": first.offset,
            "messaging.batch.message_count": len(msgs),
        },
    )
    return BatchToken(span, ids)


def batch_ended(token: BatchToken, error: BaseException | None) -> None:
    """End what :func:`batch_started` began (``error``: the batch processor's, if any)."""
    process_ended(token.inner, error)
    if token.ids is not None:
        _TRACE_IDS_VAR.reset(token.ids)


# -- db, cache, lock, idgen (each operation a network round trip: a call is noise) ------
def _db_system(url: object) -> str:
    scheme = str(getattr(url, "scheme", "")).split("+", 1)[0]
    return {"mysql": "mysql", "mariadb": "mariadb", "sqlite": "sqlite"}.get(scheme, scheme)


def db_statement_span(primary_url: object, operation: str, table: str) -> SpanLike:
    """``<operation> <table>`` (kind client) around one statement (``db.system`` from
    the primary's URL scheme, ``db.operation.name``, ``db.collection.name``)."""
    on = _on()
    if on is None:
        return NO_SPAN
    span: SpanLike = on.start(
        f"{operation} {table}" if table else operation,
        "client",
        {
            "db.system": _db_system(primary_url),
            "db.operation.name": operation,
            "db.collection.name": table,
        },
    )
    return span


def db_transaction_span(primary_url: object, mode: str) -> SpanLike:
    """``db.transaction`` (kind internal) around a writer/reader/transaction block:
    its statements are its children."""
    on = _on()
    if on is None:
        return NO_SPAN
    span: SpanLike = on.start(
        "db.transaction",
        "internal",
        {"db.system": _db_system(primary_url), "gochat.db.mode": mode},
    )
    return span


def cache_span(url: object, op: str, key: str) -> SpanLike:
    """``<OP>`` (kind client) around one cache operation: ``db.system`` is ``redis``
    (``memory`` for the in-memory cache), the key goes in ``gochat.cache.key``."""
    on = _on()
    if on is None:
        return NO_SPAN
    scheme = str(getattr(url, "scheme", ""))
    span: SpanLike = on.start(
        op.upper(),
        "client",
        {
            "db.system": "memory" if scheme == "memory" else "redis",
            "db.operation.name": op.upper(),
            "gochat.cache.key": key,
        },
    )
    return span


def lock_span(op: str, name: str) -> SpanLike:
    """``lock.acquire`` (the attempts until held or refused) or ``lock.hold`` (the
    ``async with`` body, renewals included) for the lock ``name``."""
    on = _on()
    if on is None:
        return NO_SPAN
    span: SpanLike = on.start(f"lock.{op}", "internal", {"gochat.lock.name": name})
    return span


def idgen_span(op: str, **attributes: AttributeValue) -> SpanLike:
    """``idgen.<op>`` around a machine-ID lease step (acquire, renew, release)."""
    on = _on()
    if on is None:
        return NO_SPAN
    span: SpanLike = on.start(f"idgen.{op}", "internal", dict(attributes))
    return span


def idgen_event(name: str, **attributes: AttributeValue) -> None:
    """A point event of the machine-ID lease (``lost``...): a span that ends at once."""
    on = _on()
    if on is None:
        return
    with on.start(f"idgen.{name}", "internal", dict(attributes)):
        pass
