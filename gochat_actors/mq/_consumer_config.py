"""What a consumer hands each of its sessions: a frozen configuration (checked once, by
``Consumer``) and the tally the sessions count into (the counters of
:meth:`Consumer.statistics` and the per-topic metric children)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from supervisors import Backoff

from ..metrics import Metrics
from ._message import Message

__all__ = ["ConsumerConfig", "ConsumerTally", "Processor"]

Processor = Callable[[Message], Awaitable[None]]
"""A message handler: ``async def persist(msg: Message) -> None``. Raising retries it."""


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How a consumer processes (see :class:`~gochat_actors.mq.Consumer` for each)."""

    group_id: str
    processor: Processor
    concurrency: int
    retries: int
    retry_backoff: Backoff
    dead_letter_topic: str | None
    processing_timeout: float | None
    commit_interval: float
    revoke_timeout: float
    max_buffered: int


class ConsumerTally:
    """Counters since the consumer was built, across its sessions, and its metrics."""

    __slots__ = ("_by_topic", "dead_lettered", "metrics", "processed", "retried")

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        self.processed = 0
        self.retried = 0
        self.dead_lettered = 0
        self._by_topic: dict[tuple[str, str], Any] = {}

    def metric(self, family: str, topic: str) -> Any:
        """The ``topic`` child of the metric family ``family`` (None without metrics)."""
        child = self._by_topic.get((family, topic))
        if child is None and self.metrics is not None:
            child = getattr(self.metrics, family).labels(topic=topic)
            self._by_topic[(family, topic)] = child
        return child
