"""Whether spans are on: one record, read by every hook, set once.

Spans are on when :func:`enable` was called, or when the first hook finds
OpenTelemetry already imported with a tracer provider set. Without OpenTelemetry
imported by someone else, nothing here imports it: without the ``otel`` extra, or
with it and no tracing set up, the cost of a hook is one attribute read.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .._exceptions import TracingUnavailable

if TYPE_CHECKING:
    from ._otel import Spans

__all__ = ["SPANS", "disable", "enable", "is_enabled", "spans"]


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
