"""``Message`` (what a processor receives) and the header names the library writes."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from .._tracing import message_trace
from .._w3c import TRACEPARENT_HEADER, parse_traceparent
from ..log import new_trace_id
from ._protocol import OutgoingRecord, RawRecord

__all__ = [
    "DLQ_ATTEMPTS",
    "DLQ_ERROR_MESSAGE",
    "DLQ_ERROR_TYPE",
    "DLQ_HEADERS",
    "DLQ_ORIGINAL_OFFSET",
    "DLQ_ORIGINAL_PARTITION",
    "DLQ_ORIGINAL_TOPIC",
    "TIMESTAMP_HEADER",
    "TRACEPARENT_HEADER",
    "TRACE_ID_HEADER",
    "Message",
    "outgoing_record",
]

TRACE_ID_HEADER = "trace_id"
"""Header carrying the trace ID (as the Go original: ``trace_id``)."""
TIMESTAMP_HEADER = "timestamp"
"""Header carrying the send time, unix seconds as decimal text (as the Go original)."""

DLQ_ORIGINAL_TOPIC = "dlq.original_topic"
DLQ_ORIGINAL_PARTITION = "dlq.original_partition"
DLQ_ORIGINAL_OFFSET = "dlq.original_offset"
DLQ_ERROR_TYPE = "dlq.error_type"
DLQ_ERROR_MESSAGE = "dlq.error_message"
DLQ_ATTEMPTS = "dlq.attempts"
DLQ_HEADERS = (
    DLQ_ORIGINAL_TOPIC,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ERROR_TYPE,
    DLQ_ERROR_MESSAGE,
    DLQ_ATTEMPTS,
)
"""The headers a dead-lettered message gains (besides its own, ``trace_id`` included)."""

_MAX_TRACE_ID = 128
_tuple_new = tuple.__new__


class Message(NamedTuple):
    """One consumed message, as a processor receives it.

    ``headers`` maps each header name to its value (the last one wins if a name repeats);
    ``trace_id`` is the trace of the W3C ``traceparent`` header when it is valid, else
    the ``trace_id`` header, else a new one; ``timestamp`` is the record's timestamp in
    seconds since the epoch.

    Example::

        async def persist(msg: Message) -> None:
            room = msg.key.decode() if msg.key else "?"
            log.info("stored", room=room, offset=msg.offset)   # carries msg.trace_id
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes]
    trace_id: str
    timestamp: float

    @classmethod
    def from_record(cls, record: RawRecord) -> Message:
        """Decode a consumed record; raises ``ValueError``/``TypeError`` when it cannot be
        (a header that is not ``str`` -> ``bytes``, a ``trace_id`` that is not printable
        UTF-8 of at most 128 characters): such a record goes to the dead-letter topic.

        Example::

            msg = Message.from_record(record)
        """
        headers: dict[str, bytes] = {}
        pairs: Iterable[tuple[object, object]] = record.headers  # checked: any broker's data
        for name, value in pairs:
            if type(name) is not str or type(value) is not bytes:  # the rare cases
                if not isinstance(name, str):
                    raise TypeError(f"header name {name!r} is not a str")
                if value is None:
                    value = b""
                elif not isinstance(value, bytes):
                    raise TypeError(
                        f"header {name!r} has a {type(value).__name__} value, not bytes"
                    )
            headers[name] = value
        raw = headers.get(TRACE_ID_HEADER)
        parent = headers.get(TRACEPARENT_HEADER)
        if parent is not None and (raw is None or parent[3:35] != raw):
            # traceparent first; when it agrees with trace_id (all ours do) the checks
            # below are enough: no parsing on the common path
            w3c = parse_traceparent(parent)
            if w3c is not None:
                raw = w3c.trace_id.encode()
        if not raw:
            trace_id = new_trace_id()
        elif len(raw) <= _MAX_TRACE_ID and raw.isalnum():
            # ASCII letters and digits only (bytes.isalnum knows no others): printable, one
            # character a byte, what every trace ID this library makes is; half the cost
            # of decoding first and asking str.isprintable
            trace_id = raw.decode()
        else:
            trace_id = raw.decode("utf-8")
            if len(trace_id) > _MAX_TRACE_ID or not trace_id.isprintable():
                raise ValueError(
                    f"{TRACE_ID_HEADER} header is not printable text of at most "
                    f"{_MAX_TRACE_ID} characters"
                )
        # tuple.__new__: the fields are already what they must be (no re-check, no
        # Python-level __new__ per message)
        return _tuple_new(
            cls,
            (
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                headers,
                trace_id,
                record.timestamp / 1000.0,
            ),
        )


def outgoing_record(
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None = None,
    *,
    partition: int | None = None,
    trace_id: str | None = None,
    trace_headers: tuple[bytes, bytes | None] | None = None,
) -> OutgoingRecord:
    """Check a send's arguments and build its record: the caller's headers, then
    ``traceparent`` (W3C) and ``trace_id`` (the same trace: ``trace_id``, else the
    current span's or log context's, else a new one) and ``timestamp`` (now, unix
    seconds) unless the caller set them. ``trace_headers``: both headers' values, made
    once for many records (:func:`gochat_actors._tracing.message_trace`).

    Raises ``TypeError``/``ValueError`` naming the bad argument.

    Example::

        outgoing_record("chat.messages", b"hi", key=b"room:42", headers={"k": b"v"})
    """
    now = time.time()
    if (
        not headers
        and partition is None
        and type(topic) is str
        and topic
        and type(value) is bytes
        and (key is None or type(key) is bytes)
    ):  # the common case, checked at once
        tid, parent = trace_headers or message_trace(trace_id)
        return _tuple_new(
            OutgoingRecord,
            (
                topic,
                value,
                key,
                (
                    (TRACEPARENT_HEADER, parent),
                    (TRACE_ID_HEADER, tid),
                    (TIMESTAMP_HEADER, _timestamp_text(now)),
                )
                if parent is not None
                else ((TRACE_ID_HEADER, tid), (TIMESTAMP_HEADER, _timestamp_text(now))),
                int(now * 1000),
                None,
            ),
        )
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic must be a non-empty str, got {topic!r}")
    if value is not None and not isinstance(value, bytes):
        raise TypeError(f"value must be bytes or None, got {type(value).__name__}")
    if key is not None and not isinstance(key, bytes):
        raise TypeError(f"key must be bytes or None, got {type(key).__name__}")
    if value is None and key is None:
        raise ValueError("a message needs a value or a key (a None value with a key is a delete)")
    if partition is not None and (
        not isinstance(partition, int) or isinstance(partition, bool) or partition < 0
    ):
        raise ValueError(f"partition must be an int >= 0 or None, got {partition!r}")
    if not headers:  # the common case: only ours
        tid, parent = trace_headers or message_trace(trace_id)
        pairs: tuple[tuple[str, bytes], ...] = (
            (TRACE_ID_HEADER, tid),
            (TIMESTAMP_HEADER, _timestamp_text(now)),
        )
        if parent is not None:
            pairs = ((TRACEPARENT_HEADER, parent), *pairs)
        return _tuple_new(OutgoingRecord, (topic, value, key, pairs, int(now * 1000), partition))
    given: list[tuple[str, bytes]] = []
    names: set[str] = set()
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, data in items:
        if not isinstance(name, str) or not name:
            raise TypeError(f"header names must be non-empty str, got {name!r}")
        if not isinstance(data, bytes):
            raise TypeError(f"header {name!r} must be bytes, got {type(data).__name__}")
        given.append((name, data))
        names.add(name)
    if TRACEPARENT_HEADER not in names:
        if TRACE_ID_HEADER in names:  # the caller's trace: a traceparent in it, if W3C
            own = next(v for k, v in given if k == TRACE_ID_HEADER)
            parent = message_trace(own.decode("utf-8", "replace"))[1]
        else:
            tid, parent = trace_headers or message_trace(trace_id)
            given.append((TRACE_ID_HEADER, tid))
        if parent is not None:
            given.append((TRACEPARENT_HEADER, parent))
    elif TRACE_ID_HEADER not in names:  # the caller's traceparent: its trace, the seed's way
        w3c = parse_traceparent(next(v for k, v in given if k == TRACEPARENT_HEADER))
        given.append((TRACE_ID_HEADER, w3c.trace_id.encode() if w3c else message_trace()[0]))
    if TIMESTAMP_HEADER not in names:
        given.append((TIMESTAMP_HEADER, _timestamp_text(now)))
    return OutgoingRecord(topic, value, key, tuple(given), int(now * 1000), partition)


_last_second: list[tuple[int, bytes]] = [(0, b"0")]


def _timestamp_text(now: float) -> bytes:
    """``now`` as whole unix seconds in ASCII (cached: it changes once a second)."""
    second = int(now)
    cached = _last_second[0]
    if cached[0] != second:
        cached = _last_second[0] = (second, b"%d" % second)
    return cached[1]
