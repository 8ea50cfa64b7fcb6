"""The message queue's metric families (registered by every ``Metrics``)."""

from __future__ import annotations

from ..metrics import SLOW_BUCKETS, Family, declare

__all__ = ["FAMILIES"]

FAMILIES = declare(
    Family.counter(
        "mq_messages_produced", "Messages produced (acknowledged by the broker).", "topic"
    ),
    Family.counter("mq_messages_consumed", "Messages consumed and processed.", "topic"),
    Family.histogram(
        "mq_processing_duration",
        "mq_processing_seconds",
        "Time to process one consumed message.",
        "topic",
        buckets=SLOW_BUCKETS,
    ),
    Family.counter("mq_retries", "Message processing retries.", "topic"),
    Family.counter("mq_dead_lettered", "Messages sent to the dead-letter topic.", "topic"),
    Family.gauge(
        "mq_lag",
        "Consumer lag in messages (high watermark - committed offset).",
        "topic",
        "partition",
    ),
)
