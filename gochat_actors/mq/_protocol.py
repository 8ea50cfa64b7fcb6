"""The small backend Protocol every broker implements (Kafka, in-memory), and its records.

A backend is used from trio. Each method is one unit of work: the Kafka backend crosses
the asyncio bridge once per call (a whole batch to produce, a commit), never per record.

::

    MQBackend                 one connection to a broker
     ├── send_batch(records)  -> one RecordMetadata or MQError per record, in order
     ├── create_topic / end_offsets / committed / ping
     └── open_consumer(group_id, topics, options) -> GroupConsumer
                                 └── run(handler): join the group, poll batches, hand each
                                     to handler.deliver_nowait, else handler.deliver (it
                                     waits: backpressure); on a rebalance call
                                     handler.revoke and commit what it returns
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, NoReturn, Protocol

__all__ = [
    "Batch",
    "ConsumerOptions",
    "GroupConsumer",
    "GroupHandler",
    "MQBackend",
    "OutgoingRecord",
    "RawRecord",
    "RecordMetadata",
    "TopicPartition",
    "murmur2_partition",
]


class TopicPartition(NamedTuple):
    """One partition of a topic (a plain tuple: equal to aiokafka's ``TopicPartition``).

    Example::

        TopicPartition("chat.messages", 0)
    """

    topic: str
    partition: int


class RecordMetadata(NamedTuple):
    """Where the broker stored a produced message: topic, partition, offset, timestamp
    (seconds since the epoch, the record's timestamp).

    Example::

        meta = await producer.send("chat.messages", b"hi")
        print(meta.partition, meta.offset)
    """

    topic: str
    partition: int
    offset: int
    timestamp: float


class OutgoingRecord(NamedTuple):
    """A record to produce, headers already complete (``trace_id``, ``timestamp``).
    A dead letter may carry a ``None`` header value (Kafka's null header, kept as it was).

    ``partition=None`` lets the backend choose: murmur2 of the key (Kafka's default
    partitioner), or one partition per batch for records without a key.

    Example::

        OutgoingRecord("chat.messages", b"hi", key=b"room:42", timestamp_ms=1700000000000)
    """

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0
    partition: int | None = None

    @property
    def size(self) -> int:
        """Bytes of key, value and headers (what ``max_message_bytes`` limits)."""
        size = len(self.key or b"") + len(self.value or b"")
        for name, value in self.headers:
            size += len(name) + len(value or b"")
        return size


class RawRecord(Protocol):
    """A consumed record as a backend hands it over (aiokafka's ``ConsumerRecord`` fits).

    ``timestamp`` is in milliseconds. Turn it into a :class:`~gochat_actors.mq.Message`
    with ``Message.from_record``.
    """

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...
    @property
    def timestamp(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Batch:
    """What one poll returned: records per partition (offset order), and for every
    assigned partition the high watermark last seen (the next offset the broker will
    write). ``epoch`` counts the rebalances this consumer had begun when it polled: a
    batch older than the latest :meth:`GroupHandler.revoke` is stale.

    Example::

        Batch(epoch=1, records={tp: [rec1, rec2]}, highwater={tp: 3})
    """

    epoch: int
    records: Mapping[TopicPartition, Sequence[RawRecord]]
    highwater: Mapping[TopicPartition, int]


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """Group-consumer tuning. Timeouts in seconds; the in-memory broker ignores the
    session, heartbeat and poll-interval settings (its members never time out).

    ``max_poll_interval`` is Kafka's ``max.poll.interval.ms``: a member whose poll loop
    is held back longer (backpressure: the consumer is full) drops out of the group
    and its partitions go to the others until it polls again.

    ``fetch_max_wait`` is Kafka's ``fetch.max.wait.ms``: how long the broker may hold a
    fetch that finds no new record. Kafka answers it as soon as one is produced; a
    broker that does not (Tansu: ~250 ms at the 500 ms default) adds up to that much to the
    latency of the records produced meanwhile: lower it there (the lower, the more
    often an idle consumer asks; ``0`` is taken as 1 ms). The in-memory broker ignores it.

    ``auto_offset_reset`` is where a group starts on a partition it never committed:
    ``"earliest"`` (nothing produced before the group's first start is skipped) or
    ``"latest"``.

    Example::

        ConsumerOptions(max_records=200, session_timeout=2.0, heartbeat_interval=0.2)
    """

    max_records: int = 500
    poll_timeout: float = 0.5
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout: float = 10.0
    heartbeat_interval: float = 1.0
    rebalance_timeout: float = 30.0
    request_timeout: float = 30.0
    max_poll_interval: float = 300.0
    fetch_max_wait: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.max_records, int) or self.max_records < 1:
            raise ValueError(f"max_records must be an int >= 1, got {self.max_records!r}")
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise ValueError(
                f"auto_offset_reset must be 'earliest' or 'latest', got {self.auto_offset_reset!r}"
            )
        for name in (
            "poll_timeout",
            "session_timeout",
            "heartbeat_interval",
            "rebalance_timeout",
            "request_timeout",
            "max_poll_interval",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        wait = self.fetch_max_wait
        if not isinstance(wait, int | float) or isinstance(wait, bool) or not 0 <= wait < 3600:
            raise ValueError(
                f"fetch_max_wait must be a number of seconds in [0, 3600), got {wait!r}"
            )


class GroupHandler(Protocol):
    """What a group consumer hands its work to (the consumer actor implements it)."""

    def deliver_nowait(self, batch: Batch) -> bool:
        """Take one polled batch if there is room right now (False: call :meth:`deliver`).

        Synchronous, so a backend on the asyncio side of the bridge can hand a batch
        over without a crossing when the consumer keeps up.
        """
        ...

    async def deliver(self, batch: Batch) -> None:
        """Take one polled batch; waits while the consumer is full (backpressure)."""
        ...

    async def revoke(
        self, partitions: frozenset[TopicPartition], epoch: int
    ) -> dict[TopicPartition, int]:
        """The group takes ``partitions`` away: finish or cancel their work and return
        the offsets to commit before they go (``epoch`` is the new rebalance count)."""
        ...


class GroupConsumer(Protocol):
    """One member of a consumer group (subscribed to its topics once :meth:`run` starts)."""

    async def run(self, handler: GroupHandler) -> NoReturn:
        """Join the group and poll until cancelled; raises ``MQError`` on a fatal error."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offsets`` (the next offset to read, per partition) for the group."""
        ...

    async def aclose(self) -> None:
        """Leave the group and release the connection (idempotent)."""
        ...


class MQBackend(Protocol):
    """A connection to a broker: produce, a few admin queries, and group consumers."""

    async def ping(self) -> None:
        """One round trip to the broker; raises ``MQError`` if it does not answer."""
        ...

    async def send_batch(
        self, records: Sequence[OutgoingRecord]
    ) -> list[RecordMetadata | Exception]:
        """Produce ``records``; one result per record, in order (an ``MQError`` for a
        record that failed). Raises only if the whole call failed."""
        ...

    async def create_topic(self, topic: str, partitions: int = 1) -> None:
        """Create ``topic`` with ``partitions`` partitions; an existing topic is left as is."""
        ...

    async def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has (0 if it does not exist)."""
        ...

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The high watermark (next offset to be written) of each partition."""
        ...

    async def committed(
        self, group_id: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        """The offsets ``group_id`` committed (None where it never committed)."""
        ...

    async def open_consumer(
        self, group_id: str, topics: Sequence[str], options: ConsumerOptions
    ) -> GroupConsumer:
        """A new member of ``group_id`` for ``topics`` (connected; joins on ``run``)."""
        ...

    async def aclose(self) -> None:
        """Flush what was sent and close (idempotent)."""
        ...


def murmur2_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partition of ``key``: murmur2, masked positive, modulo the count.

    The same key lands on the same partition number in every backend (and in the Java
    and Go clients).

    Example::

        >>> murmur2_partition(b"room:42", 4) == murmur2_partition(b"room:42", 4)
        True
        >>> murmur2_partition(b"", 1)
        0
    """
    length = len(key)
    seed = 0x9747B28C
    m = 0x5BD1E995
    h = (seed ^ length) & 0xFFFFFFFF
    end = length - length % 4
    for i in range(0, end, 4):
        k = key[i] | key[i + 1] << 8 | key[i + 2] << 16 | key[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    if rest >= 3:
        h ^= key[end + 2] << 16
    if rest >= 2:
        h ^= key[end + 1] << 8
    if rest >= 1:
        h ^= key[end]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions
