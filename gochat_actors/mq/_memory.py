"""The in-memory broker: topics, partitions, consumer groups with assignment and committed
offsets, on the trio clock. The embedded default (``brokers = "memory://"``), for users'
tests, the demo, and ``autojump_clock`` timing tests.

It passes the same conformance suite as Kafka. What it leaves out: replication, retention,
sessions and heartbeats (a member stays until it leaves or misses a rebalance by
``rebalance_timeout``), and persistence (a broker lives as long as its object).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

import trio

from .._exceptions import MessageTooLarge, MQError, MQUnavailable
from .._pause import PauseSwitch
from ..log import get_logger
from ._protocol import (
    Batch,
    ConsumerOptions,
    GroupHandler,
    OutgoingRecord,
    RawRecord,
    RecordMetadata,
    TopicPartition,
    murmur2_partition,
)

__all__ = ["MemoryBackend", "MemoryBroker", "default_broker"]

_log = get_logger("gochat_actors.mq")


class _Stored:
    """One stored record (satisfies ``RawRecord``)."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: tuple[tuple[str, bytes], ...],
        timestamp: int,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp

    def __repr__(self) -> str:
        return f"<record {self.topic}[{self.partition}]@{self.offset}>"


class MemoryBroker(PauseSwitch):
    """An in-process broker. Share one between the producer and the consumers of a test.

    Topics are created on first use with ``default_partitions`` partitions (as Kafka's
    ``auto.create.topics.enable``), or explicitly with :meth:`create_topic`.

    Example::

        broker = MemoryBroker()
        broker.create_topic("chat.messages", partitions=4)
        producer = Producer(MQSettings(), broker=broker)
    """

    def __init__(self, *, default_partitions: int = 1) -> None:
        if not isinstance(default_partitions, int) or default_partitions < 1:
            raise ValueError(f"default_partitions must be an int >= 1, got {default_partitions!r}")
        self.default_partitions = default_partitions
        self._topics: dict[str, list[list[_Stored]]] = {}
        self._groups: dict[str, _Group] = {}
        self._changed = trio.Event()
        self._down = False
        self._produce_delay: Callable[[Sequence[OutgoingRecord]], float] | None = None

    # -- faults (pause/resume come from PauseSwitch: producers wait, fetches stop) ----
    def set_down(self, down: bool = True) -> None:
        """While down, every client call raises :class:`~gochat_actors.MQUnavailable`.

        Example::

            broker.set_down()
            with pytest.raises(MQUnavailable):
                await producer.send("t", b"x", timeout=1)
        """
        self._down = down
        self._notify()

    def set_produce_delay(
        self, delay: float | Callable[[Sequence[OutgoingRecord]], float] | None
    ) -> None:
        """Apply each produced batch ``delay`` seconds after it arrives (a callable gets
        the batch and returns its delay; ``None`` or 0: at once; a number must be finite
        and >= 0, else ``ValueError``). The batch is applied
        even if its client gave up waiting meanwhile, as a broker applies a request it
        received: what a test needs for late replies and reordered flights.

        Example::

            broker.set_produce_delay(lambda records: 5.0 if records[0].value == b"x" else 0)
        """
        if delay is None or callable(delay):
            self._produce_delay = delay
        else:
            seconds = float(delay)
            # the wait is shielded: an infinite one would hang the producer's shutdown
            if not 0 <= seconds < math.inf:
                raise ValueError(
                    f"produce delay must be a finite number of seconds >= 0, got {delay!r}"
                )
            self._produce_delay = lambda _records: seconds

    async def _apply_late(self, records: Sequence[OutgoingRecord]) -> None:
        """Wait the produce delay of ``records``, shielded: a request the broker got is
        applied whether or not its client still waits."""
        delay = self._produce_delay(records) if self._produce_delay is not None else 0.0
        if delay > 0:
            with trio.CancelScope(shield=True):
                await trio.sleep(delay)

    async def _gate(self, *, wait_while_down: bool = False) -> None:
        """Checkpoint; then wait while paused; while down, raise (a client call) or wait
        (a consumer's fetch loop, which keeps retrying as Kafka clients do)."""
        await trio.lowlevel.checkpoint()
        while self._resumed is not None or (self._down and wait_while_down):
            if self._resumed is not None:
                await self._resumed.wait()
            else:
                await self._changed.wait()
        if self._down:
            raise MQUnavailable("the memory broker is down")

    # -- topics ------------------------------------------------------------------
    def create_topic(self, topic: str, partitions: int = 1) -> None:
        """Create ``topic`` (an existing one is left as it is).

        Example::

            broker.create_topic("chat.messages", partitions=4)
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty str, got {topic!r}")
        if not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"partitions must be an int >= 1, got {partitions!r}")
        if topic not in self._topics:
            self._topics[topic] = [[] for _ in range(partitions)]
            for group in self._groups.values():  # as Kafka: new partitions to assign
                if any(topic in m.topics for m in group.members.values()):
                    group.begin_rebalance()
            self._notify()

    def topics(self) -> dict[str, int]:
        """Every topic with its partition count.

        Example::

            assert broker.topics() == {"chat.messages": 4}
        """
        return {name: len(parts) for name, parts in self._topics.items()}

    def partitions(self, topic: str) -> int:
        """The partition count of ``topic`` (0 if it does not exist)."""
        return len(self._topics.get(topic, ()))

    def records(self, topic: str, partition: int = 0) -> list[RawRecord]:
        """A copy of what ``topic[partition]`` holds, in offset order (for tests).

        Example::

            [r.value for r in broker.records("chat.messages.dlq")]
        """
        parts = self._topics.get(topic)
        if parts is None or not 0 <= partition < len(parts):
            return []
        return list(parts[partition])

    def end_offset(self, tp: TopicPartition) -> int:
        """The next offset ``tp`` will be written at (0 for an unknown partition)."""
        parts = self._topics.get(tp.topic)
        if parts is None or not 0 <= tp.partition < len(parts):
            return 0
        return len(parts[tp.partition])

    def committed(self, group_id: str, tp: TopicPartition) -> int | None:
        """The offset ``group_id`` committed for ``tp``, or None."""
        group = self._groups.get(group_id)
        return None if group is None else group.committed.get(tp)

    def append(
        self, records: Sequence[OutgoingRecord], *, max_message_bytes: float = math.inf
    ) -> list[RecordMetadata | Exception]:
        """Store ``records``; one result per record (synchronous: nothing to wait for)."""
        results: list[RecordMetadata | Exception] = []
        sticky: dict[str, int] = {}
        for record in records:
            try:
                results.append(self._append_one(record, sticky, max_message_bytes))
            except MQError as exc:
                results.append(exc)
        self._notify()
        return results

    def _append_one(
        self, record: OutgoingRecord, sticky: dict[str, int], max_message_bytes: float
    ) -> RecordMetadata:
        if record.size > max_message_bytes:
            raise MessageTooLarge(
                f"send: the message is {record.size} bytes, over the {max_message_bytes:g} "
                "bytes limit"
            )
        parts = self._topics.get(record.topic)
        if parts is None:
            self.create_topic(record.topic, self.default_partitions)
            parts = self._topics[record.topic]
        if record.partition is not None:
            partition = record.partition
            if partition >= len(parts):
                raise MQError(
                    f"send: topic {record.topic!r} has no partition {partition} "
                    f"(it has {len(parts)})"
                )
        elif record.key is not None:
            partition = murmur2_partition(record.key, len(parts))
        else:
            partition = sticky.get(record.topic, -1)
            if partition < 0:
                partition = sticky[record.topic] = random.randrange(len(parts))
        log = parts[partition]
        stored = _Stored(
            record.topic,
            partition,
            len(log),
            record.key,
            record.value,
            record.headers,
            record.timestamp_ms,
        )
        log.append(stored)
        return RecordMetadata(record.topic, partition, stored.offset, record.timestamp_ms / 1000)

    # -- groups ------------------------------------------------------------------
    def _group(self, group_id: str) -> _Group:
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups[group_id] = _Group(self, group_id)
        return group

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_changed(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._changed.wait()

    def __repr__(self) -> str:
        return f"<MemoryBroker topics={len(self._topics)} groups={len(self._groups)}>"


_DEFAULT: trio.lowlevel.RunVar[MemoryBroker] = trio.lowlevel.RunVar("gochat_mq_memory_broker")


def default_broker() -> MemoryBroker:
    """The broker ``memory://`` means when no ``broker=`` is given: one per ``trio.run``."""
    try:
        return _DEFAULT.get()
    except LookupError:
        broker = MemoryBroker()
        _DEFAULT.set(broker)
        return broker


class _Member:
    __slots__ = ("assignment", "generation", "id", "positions", "topics")

    def __init__(self, member_id: str, topics: tuple[str, ...]) -> None:
        self.id = member_id
        self.topics = topics
        self.generation = -1
        self.assignment: tuple[TopicPartition, ...] = ()
        self.positions: dict[TopicPartition, int] = {}


class _Group:
    """Eager rebalancing: every change revokes everything, then all members rejoin."""

    _ids = itertools.count(1)

    def __init__(self, broker: MemoryBroker, group_id: str) -> None:
        self.broker = broker
        self.group_id = group_id
        self.members: dict[str, _Member] = {}
        self.joined: set[str] = set()
        self.generation = 0
        self.rebalancing = False
        self.rebalance_started = 0.0
        self.committed: dict[TopicPartition, int] = {}

    def new_member(self, topics: tuple[str, ...]) -> _Member:
        return _Member(f"{self.group_id}-member-{next(self._ids)}", topics)

    def add(self, member: _Member) -> None:
        self.members[member.id] = member
        self.begin_rebalance()

    def remove(self, member: _Member) -> None:
        member.assignment = ()
        member.generation = -1
        if self.members.pop(member.id, None) is not None:
            self.joined.discard(member.id)
            self.begin_rebalance()

    def begin_rebalance(self) -> None:
        self.rebalancing = True
        self.joined.clear()
        self.rebalance_started = trio.current_time()
        self.broker._notify()
        self.maybe_complete()

    def join(self, member: _Member) -> None:
        self.joined.add(member.id)
        self.maybe_complete()

    def evict_stragglers(self) -> None:
        for member_id in [m for m in self.members if m not in self.joined]:
            straggler = self.members.pop(member_id)
            straggler.assignment = ()
            straggler.generation = -1
            _log.warning(
                "mq member evicted: it did not rejoin within the rebalance timeout",
                group=self.group_id,
                member=member_id,
            )
        self.maybe_complete()

    def maybe_complete(self) -> None:
        if not self.rebalancing or not self.joined.issuperset(self.members):
            return
        self.generation += 1
        self.rebalancing = False
        members = sorted(self.members.values(), key=lambda m: m.id)
        assigned: dict[str, list[TopicPartition]] = {m.id: [] for m in members}
        topics = sorted({t for m in members for t in m.topics})
        turn = 0
        for topic in topics:
            for partition in range(self.broker.partitions(topic)):
                candidates = [m for m in members if topic in m.topics]
                member = candidates[turn % len(candidates)]
                turn += 1
                assigned[member.id].append(TopicPartition(topic, partition))
        for member in members:
            member.assignment = tuple(assigned[member.id])
            member.generation = self.generation
            member.positions = {}
        self.broker._notify()

    def commit(self, member: _Member, offsets: Mapping[TopicPartition, int]) -> None:
        if member.id not in self.members or member.generation != self.generation:
            raise MQError(
                f"commit failed: group {self.group_id!r} rebalanced (member {member.id} is "
                "not in the current generation)"
            )
        for tp, offset in offsets.items():
            if not isinstance(offset, int) or offset < 0:
                raise MQError(f"commit failed: bad offset {offset!r} for {tp}")
            self.committed[TopicPartition(*tp)] = offset


class _MemoryGroupConsumer:
    """One member of a memory group: a poll loop and a coordinator loop (as aiokafka's
    fetch and coordinator tasks), both inside :meth:`run`."""

    def __init__(
        self, broker: MemoryBroker, group_id: str, topics: tuple[str, ...], options: ConsumerOptions
    ) -> None:
        self._broker = broker
        self._group = broker._group(group_id)
        self._member = self._group.new_member(topics)
        self._options = options
        self._epoch = 0
        self._closed = False

    async def run(self, handler: GroupHandler) -> NoReturn:
        if self._closed:
            raise MQUnavailable("this consumer was closed")
        # Leaving the group is aclose()'s job, as with Kafka: after run() the member can
        # still commit what it finished (its final commit), then it leaves.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._coordinate, handler)
            await self._poll(handler)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _coordinate(self, handler: GroupHandler) -> NoReturn:
        group, member, broker = self._group, self._member, self._broker
        group.add(member)
        while True:
            if member.id not in group.members:
                group.add(member)  # evicted: join again
            if group.rebalancing and member.id not in group.joined:
                self._epoch += 1
                revoked, member.assignment = member.assignment, ()
                if revoked:
                    offsets = await handler.revoke(frozenset(revoked), self._epoch)
                    if offsets:
                        try:
                            group.commit(member, offsets)
                        except MQError as exc:
                            _log.warning("mq commit on revoke failed", error=str(exc))
                if member.id in group.members:
                    group.join(member)
                continue
            deadline = math.inf
            if group.rebalancing:
                deadline = group.rebalance_started + self._options.rebalance_timeout
                if trio.current_time() >= deadline:
                    group.evict_stragglers()
                    continue
            await broker._wait_changed(deadline)

    async def _poll(self, handler: GroupHandler) -> NoReturn:
        group, member, broker = self._group, self._member, self._broker
        options = self._options
        last_delivery = -math.inf
        turn = 0
        while True:
            await broker._gate(wait_while_down=True)
            if group.rebalancing or member.generation != group.generation:
                await broker._wait_changed(math.inf)
                continue
            room = options.max_records
            records: dict[TopicPartition, list[_Stored]] = {}
            highwater: dict[TopicPartition, int] = {}
            assignment = member.assignment
            # A fair share per partition, starting one further each poll (as a fetcher
            # that fetches every partition at once): no partition starves another.
            share = -(-room // max(1, len(assignment)))
            turn += 1
            for i in range(len(assignment)):
                tp = assignment[(turn + i) % len(assignment)]
                log = broker._topics[tp.topic][tp.partition]
                highwater[tp] = len(log)
                pos = member.positions.get(tp)
                if pos is None:
                    committed = group.committed.get(tp)
                    if committed is not None:
                        pos = committed
                    else:
                        pos = 0 if options.auto_offset_reset == "earliest" else len(log)
                    member.positions[tp] = pos
                if room and pos < len(log):
                    chunk = log[pos : pos + min(room, share)]
                    records[tp] = chunk
                    room -= len(chunk)
                    member.positions[tp] = pos + len(chunk)
            now = trio.current_time()
            if not records and now < last_delivery + options.poll_timeout:
                await broker._wait_changed(last_delivery + options.poll_timeout)
                continue
            last_delivery = now
            batch = Batch(self._epoch, records, highwater)
            if not handler.deliver_nowait(batch):
                await handler.deliver(batch)
            if not records:
                await trio.lowlevel.checkpoint()

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        await self._broker._gate()
        self._group.commit(self._member, offsets)

    async def aclose(self) -> None:
        self._closed = True
        self._group.remove(self._member)
        await trio.lowlevel.checkpoint()


class MemoryBackend:
    """The :class:`~gochat_actors.mq.MQBackend` of a :class:`MemoryBroker`.

    Example::

        backend = MemoryBackend(MemoryBroker())
        [meta] = await backend.send_batch([OutgoingRecord("t", b"v")])
    """

    def __init__(self, broker: MemoryBroker, *, max_message_bytes: int = 1_048_576) -> None:
        self.broker = broker
        self._max_message_bytes = max_message_bytes
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise MQUnavailable("the memory backend is closed")

    async def ping(self) -> None:
        self._check_open()
        await self.broker._gate()

    async def send_batch(
        self, records: Sequence[OutgoingRecord]
    ) -> list[RecordMetadata | Exception]:
        self._check_open()
        await self.broker._gate()
        await self.broker._apply_late(records)
        return self.broker.append(records, max_message_bytes=self._max_message_bytes)

    async def create_topic(self, topic: str, partitions: int = 1) -> None:
        self._check_open()
        await self.broker._gate()
        self.broker.create_topic(topic, partitions)

    async def partitions(self, topic: str) -> int:
        self._check_open()
        await self.broker._gate()
        return self.broker.partitions(topic)

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        self._check_open()
        await self.broker._gate()
        return {
            TopicPartition(*tp): self.broker.end_offset(TopicPartition(*tp)) for tp in partitions
        }

    async def committed(
        self, group_id: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        self._check_open()
        await self.broker._gate()
        return {
            TopicPartition(*tp): self.broker.committed(group_id, TopicPartition(*tp))
            for tp in partitions
        }

    async def open_consumer(
        self, group_id: str, topics: Sequence[str], options: ConsumerOptions
    ) -> _MemoryGroupConsumer:
        self._check_open()
        await self.broker._gate()
        return _MemoryGroupConsumer(self.broker, group_id, tuple(topics), options)

    async def aclose(self) -> None:
        self._closed = True
        await trio.lowlevel.checkpoint()
