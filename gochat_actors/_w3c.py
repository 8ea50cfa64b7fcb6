"""W3C trace context (``traceparent``) without OpenTelemetry: formatting, parsing, IDs.

The header is ``version-trace_id-parent_id-flags`` in lowercase hex, e.g.
``00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01``. A trace ID here is what
:func:`gochat_actors.log.new_trace_id` makes (32 hex digits), so the seed's
``trace_id`` header and the ``traceparent`` trace ID are one and the same.
"""

from __future__ import annotations

import re
from random import getrandbits
from typing import NamedTuple

__all__ = [
    "TRACEPARENT_HEADER",
    "TraceParent",
    "format_traceparent",
    "is_w3c_trace_id",
    "new_span_id",
    "parse_traceparent",
]

TRACEPARENT_HEADER = "traceparent"
"""The W3C trace-context header every produced message carries (beside ``trace_id``)."""

_TRACE_ID = re.compile(r"[0-9a-f]{32}").fullmatch
# version 00 is exactly 55 characters; a later version may append "-..." fields
_TRACEPARENT = re.compile(
    rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL
).fullmatch
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class TraceParent(NamedTuple):
    """A parsed ``traceparent``: the trace, the parent span, the sampled flag.

    Example::

        TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)
    """

    trace_id: str
    span_id: str
    sampled: bool


def is_w3c_trace_id(trace_id: str) -> bool:
    """Whether ``trace_id`` is a valid W3C trace-id: 32 lowercase hex digits, not all 0.

    Example::

        >>> is_w3c_trace_id("4bf92f3577b34da6a3ce929d0e0e4736"), is_w3c_trace_id("trace-7")
        (True, False)
    """
    return _TRACE_ID(trace_id) is not None and trace_id != _ZERO_TRACE


def new_span_id() -> str:
    """A random span ID: 16 lowercase hex digits, never all 0 (the W3C parent-id).

    Example::

        >>> len(new_span_id())
        16
    """
    # random, not os.urandom: a span ID needs uniqueness, not secrecy (as OpenTelemetry's
    # own generator), and a syscall per message would show on the consumer's hot path
    return "%016x" % (getrandbits(64) or 1)


def format_traceparent(trace_id: str, span_id: str, sampled: bool = True) -> bytes:
    """The ``traceparent`` header value (version 00) for a W3C trace and span ID.

    Raises ``ValueError`` when either is not W3C-shaped.

    Example::

        >>> format_traceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
        b'00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    """
    if not is_w3c_trace_id(trace_id):
        raise ValueError(f"not a W3C trace ID (32 lowercase hex digits): {trace_id!r}")
    if re.fullmatch(r"[0-9a-f]{16}", span_id) is None or span_id == _ZERO_SPAN:
        raise ValueError(f"not a W3C span ID (16 lowercase hex digits): {span_id!r}")
    return b"00-%s-%s-%s" % (trace_id.encode(), span_id.encode(), b"01" if sampled else b"00")


def parse_traceparent(value: bytes | str) -> TraceParent | None:
    """Parse a ``traceparent`` header; None when it is not valid (the W3C rules: version
    ``ff``, an all-zero ID, a version 00 with trailing fields are invalid), so the
    caller falls back to the ``trace_id`` header.

    Example::

        >>> parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")[1:]
        ('00f067aa0ba902b7', True)
        >>> parse_traceparent("garbage") is None
        True
    """
    raw = value.encode("ascii", "replace") if isinstance(value, str) else value
    found = _TRACEPARENT(raw.strip())
    if found is None:
        return None
    version, trace, span, flags, rest = found.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    trace_id, span_id = trace.decode(), span.decode()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, span_id, bool(int(flags, 16) & 1))
