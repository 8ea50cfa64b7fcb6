"""Dead letters: a message that failed every attempt goes to the dead-letter topic, as it
was, with headers saying where it came from and why it failed."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

import trio

from .._exceptions import BridgeError, MessageTooLarge, MQError
from ..log import get_logger, new_trace_id, trace_context
from ._connect import BrokerWatch
from ._consumer_config import ConsumerConfig, ConsumerTally
from ._message import (
    DLQ_ATTEMPTS,
    DLQ_ERROR_MESSAGE,
    DLQ_ERROR_TYPE,
    DLQ_HEADERS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    TIMESTAMP_HEADER,
    TRACE_ID_HEADER,
    Message,
)
from ._protocol import MQBackend, OutgoingRecord, RawRecord

__all__ = ["dead_letter"]

_log = get_logger("gochat_actors.mq")

_ERROR_TEXT_LIMIT = 1000


async def dead_letter(
    record: RawRecord,
    msg: Message | None,
    exc: Exception,
    attempts: int,
    *,
    config: ConsumerConfig,
    tally: ConsumerTally,
    backend: MQBackend,
    watch: BrokerWatch,
) -> None:
    """Send ``record`` (it failed ``attempts`` times with ``exc``) to the dead-letter
    topic, as it was plus headers saying where it came from and why it failed; retried
    until sent (the partition waits: its offset is committed only after). Without a
    dead-letter topic, or too large for it, it is logged and skipped."""
    error = f"{exc}"[:_ERROR_TEXT_LIMIT]
    trace_id = msg.trace_id if msg is not None else None
    where = {
        "group": config.group_id,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "attempts": attempts,
        "error": f"{type(exc).__name__}: {error}",
    }
    topic = config.dead_letter_topic
    if topic is None:
        _log.error("mq message skipped: it failed and there is no dead-letter topic", **where)
        return
    # The message as it was: its headers (a null-valued one too) and its value (a
    # tombstone stays None), so a replay gives back what was consumed.
    headers: list[tuple[str, bytes | None]] = []
    pairs: Iterable[object] = record.headers  # checked: it may be what failed to decode
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            continue
        name, data = pair
        if (
            isinstance(name, str)
            and (data is None or isinstance(data, bytes))
            and name not in DLQ_HEADERS
            and name != TRACE_ID_HEADER
        ):
            headers.append((name, data))
    if trace_id is None:
        trace_id = new_trace_id()
    now = time.time()
    if not any(name == TIMESTAMP_HEADER for name, _ in headers):
        headers.append((TIMESTAMP_HEADER, b"%d" % int(now)))
    headers += [
        (TRACE_ID_HEADER, trace_id.encode()),
        (DLQ_ORIGINAL_TOPIC, record.topic.encode()),
        (DLQ_ORIGINAL_PARTITION, str(record.partition).encode()),
        (DLQ_ORIGINAL_OFFSET, str(record.offset).encode()),
        (DLQ_ERROR_TYPE, type(exc).__name__.encode()),
        (DLQ_ERROR_MESSAGE, error.encode("utf-8", "replace")),
        (DLQ_ATTEMPTS, str(attempts).encode()),
    ]
    key: object = record.key
    value: object = record.value
    out = OutgoingRecord(
        topic,
        value if isinstance(value, bytes) else None,
        key if isinstance(key, bytes) else None,
        tuple(headers),  # type: ignore[arg-type]  # a null header stays null
        int(now * 1000),
    )
    failures = 0
    with trace_context(trace_id):
        while True:
            try:
                [result] = await backend.send_batch([out])
                if isinstance(result, Exception):
                    raise result
                break
            except MessageTooLarge as too_large:
                _log.error(
                    "mq message skipped: too large for the dead-letter topic",
                    dead_letter_topic=topic,
                    dlq_error=str(too_large),
                    **where,
                )
                return
            except (MQError, BridgeError) as send_error:
                failures += 1
                delay = config.retry_backoff.delay(min(failures, 30), random.random())
                _log.error(
                    "mq dead-letter send failed; retrying",
                    dead_letter_topic=topic,
                    retry_in=round(delay, 3),
                    dlq_error=f"{type(send_error).__name__}: {send_error}",
                    **where,
                )
                watch.degrade(f"dead-letter topic {topic!r} unavailable")
                await trio.sleep(delay)
        if failures:
            watch.degrade("")
        tally.dead_lettered += 1
        counter = tally.metric("mq_dead_lettered", record.topic)
        if counter is not None:
            counter.inc()
        _log.warning("mq message dead-lettered", dead_letter_topic=topic, **where)
