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

__all__ = ["BatchProcessor", "ConsumerConfig", "ConsumerTally", "Processor"]

Processor = Callable[[Message], Awaitable[None]]
"""A message handler: ``async def persist(msg: Message) -> None``. Raising retries it."""

BatchProcessor = Callable[[list[Message]], Awaitable[None]]
"""A batch handler: ``async def persist(msgs: list[Message]) -> None``, given consecutive
messages of one partition in offset order. Raising splits the batch to find the culprit."""


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How a consumer processes (see :class:`~gochat_actors.mq.Consumer` for each).

    With ``batch_processor``, ``processor`` calls it with a batch of one: retries and
    dead letters of a batch's culprit are the per-message ones.
    """

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
    batch_processor: BatchProcessor | None = None
    max_batch: int = 500


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
