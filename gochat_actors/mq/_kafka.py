"""The Kafka backend: aiokafka on the asyncio side of the bridge.

Every method crosses the bridge once and does its whole unit of work there: a batch to
produce is split into aiokafka ``BatchBuilder``s per partition and sent with
``send_batch`` (one future per partition batch, not per record). A group consumer's poll
loop lives on the asyncio side for the consumer's whole life and hands each ``getmany``
batch to trio with ``bridge.run_trio(handler.deliver, batch)``, which waits until the
trio side took the last batch up (and while it is full): backpressure reaches the
fetcher. The rebalance listener runs in
aiokafka's coordinator task and calls ``handler.revoke`` the same way, then commits what
it returns before the partitions go.

aiokafka is imported inside the functions: importing this package loads no driver.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from .._bridge import Bridge
from .._exceptions import MessageTooLarge, MQError, MQUnavailable
from ..log import get_logger
from ._errors import kafka_errors, translate
from ._protocol import (
    Batch,
    ConsumerOptions,
    GroupHandler,
    OutgoingRecord,
    RecordMetadata,
    TopicPartition,
    murmur2_partition,
)

if TYPE_CHECKING:
    from ._settings import MQSettings

__all__ = ["KafkaBackend"]

_log = get_logger("gochat_actors.mq")

_BATCH_BYTES = 1 << 20  # one BatchBuilder per partition per flush, up to 1 MiB

READER_LIMIT = 1 << 20
"""The stream-reader limit aiokafka's connections get here (its own is 64 KiB: a socket
is paused once 128 KiB wait unread, resumed when read). On the bridge each resume starts
a trio task and each pause cancels one, about eight times per MiB fetched, a cost the
consumer pays per MiB (docs/mq.md has the figure); at 1 MiB a connection pauses at 2 MiB
buffered. It is aiokafka's module-wide setting: other aiokafka clients in the process
get it too."""
_CLOSE_TIMEOUT = 5.0
JOIN_GRACE = 1.0
"""Seconds a closing group member waits for a group join (or rebalance) in progress to
end by itself before giving it up: a broker may hold a JoinGroup for up to the
rebalance timeout, and a consumer being stopped must not wait that long."""
_TOPIC_EXISTS = 36


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _raise_reader_limit() -> None:
    import aiokafka.conn

    if getattr(aiokafka.conn, "READER_LIMIT", READER_LIMIT) < READER_LIMIT:
        aiokafka.conn.READER_LIMIT = READER_LIMIT


def _aio_tp(tp: TopicPartition) -> Any:
    from aiokafka import TopicPartition as AioTopicPartition

    return AioTopicPartition(tp[0], tp[1])


async def _close_quietly(client: Any, what: str) -> None:
    """Close an aiokafka client without letting a hung broker hold us (asyncio side)."""
    closer = getattr(client, "stop", None) or client.close
    try:
        await asyncio.wait_for(closer(), _CLOSE_TIMEOUT)
    except Exception as exc:
        _log.warning("mq close failed", client=what, error=f"{type(exc).__name__}: {exc}")


async def _stop_member(consumer: Any) -> None:
    """Stop a group member (asyncio side) within about :data:`JOIN_GRACE` even while its
    coordinator waits on a group join: then the join is given up (the coordinator's task
    cancelled), the member leaves the group if it had joined one (a LeaveGroup request
    the broker answers or not), and its connections are closed as ``stop()`` would."""
    stopping = asyncio.ensure_future(consumer.stop())
    done, _ = await asyncio.wait([stopping], timeout=JOIN_GRACE)
    if done:
        stopping.result()
        return
    coordinator = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_coordination_task", None)
    if task is not None and not task.done():
        task.cancel()  # stop() awaits it: it now ends at once, with CancelledError
    try:
        await asyncio.wait_for(asyncio.shield(stopping), _CLOSE_TIMEOUT)
        return
    except asyncio.CancelledError:
        if not stopping.cancelled():
            raise  # we are cancelled ourselves
    # stop() ended at the coordinator: finish what it skipped (aiokafka's own steps;
    # the leave is sent only by a member that had joined a generation)
    if coordinator is not None:
        await coordinator._stop_heartbeat_task()
        await coordinator._stop_commit_offsets_refresh_task()
        await coordinator._maybe_leave_group()
    if getattr(consumer, "_fetcher", None) is not None:
        await consumer._fetcher.close()
    await consumer._client.close()


async def _started(client: Any, what: str) -> Any:
    """``await client.start()`` (asyncio side), closing the client if that fails."""
    try:
        with kafka_errors("connect"):
            await client.start()
    except BaseException:
        await _close_quietly(client, what)
        raise
    return client


class KafkaBackend:
    """The :class:`~gochat_actors.mq.MQBackend` of a Kafka cluster, through ``bridge``.

    Example::

        backend = KafkaBackend(MQSettings(brokers="127.0.0.1:9092"), bridge)
        await backend.start()                       # connects: one metadata round trip
        [meta] = await backend.send_batch([OutgoingRecord("t", b"v")])
        await backend.aclose()
    """

    def __init__(
        self,
        settings: MQSettings,
        bridge: Bridge,
        *,
        acks: Literal["all", 1, 0] = "all",
        request_timeout: float = 10.0,
        max_message_bytes: int = 1_048_576,
    ) -> None:
        if settings.is_memory:
            raise ValueError("KafkaBackend needs Kafka brokers, not memory://")
        self._settings = settings
        self._bridge = bridge
        self._acks = acks
        self._request_timeout = request_timeout
        self._max_message_bytes = max_message_bytes
        self._producer: Any = None
        self._admin: Any = None
        self._offsets: Any = None
        self._partitions: dict[str, list[int]] = {}
        self._closed = False
        # The admin client and the offsets consumer are shared by the calls that use
        # them: one call at a time (created once, never re-assigned under another call).
        self._admin_lock: asyncio.Lock | None = None
        self._offsets_lock: asyncio.Lock | None = None

    def client_options(self) -> dict[str, Any]:
        """The connection keyword arguments every aiokafka client here gets (and
        :data:`READER_LIMIT` for their connections)."""
        _raise_reader_limit()
        s = self._settings
        options: dict[str, Any] = {
            "bootstrap_servers": s.bootstrap_servers,
            "client_id": s.client_id,
            "security_protocol": s.security_protocol,
            "request_timeout_ms": _ms(self._request_timeout),
        }
        if s.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = ssl.create_default_context()
        if s.security_protocol.startswith("SASL_"):
            options["sasl_mechanism"] = s.sasl_mechanism
            options["sasl_plain_username"] = s.sasl_username
            options["sasl_plain_password"] = s.sasl_password.get_secret_value()
        return options

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Start the producer: bootstrap, one metadata round trip (raises ``MQError``)."""
        await self._bridge.run_asyncio(self._start_aio)

    async def _start_aio(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            **self.client_options(),
            acks=self._acks,
            enable_idempotence=False,
            linger_ms=0,
            max_batch_size=_BATCH_BYTES,
            max_request_size=max(_BATCH_BYTES, self._max_message_bytes) + 65536,
        )
        self._producer = await _started(producer, "producer")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._bridge.run_asyncio(self._close_aio)

    async def _close_aio(self) -> None:
        for client, what in (
            (self._producer, "producer"),
            (self._admin, "admin"),
            (self._offsets, "offsets"),
        ):
            if client is not None:
                await _close_quietly(client, what)
        self._producer = self._admin = self._offsets = None

    def _require(self) -> Any:
        if self._producer is None:
            raise MQUnavailable("the Kafka backend is not started (or closed)")
        return self._producer

    # -- producing -----------------------------------------------------------------
    async def ping(self) -> None:
        await self._bridge.run_asyncio(self._ping_aio)

    async def _ping_aio(self) -> None:
        producer = self._require()
        with kafka_errors("ping"):
            ok = await producer.client.fetch_all_metadata()
        if not ok or not ok.brokers():
            raise MQUnavailable("ping: the broker returned no metadata")

    async def send_batch(
        self, records: Sequence[OutgoingRecord]
    ) -> list[RecordMetadata | Exception]:
        return await self._bridge.run_asyncio(self._send_aio, records)

    async def _partitions_of(self, topic: str) -> list[int]:
        parts = self._partitions.get(topic)
        if parts is None:
            with kafka_errors("metadata"):
                found = await self._require().partitions_for(topic)
            parts = self._partitions[topic] = sorted(found)
        return parts

    async def _send_aio(
        self, records: Sequence[OutgoingRecord]
    ) -> list[RecordMetadata | Exception]:
        producer = self._require()
        limit = self._max_message_bytes
        results: list[RecordMetadata | Exception | None] = [None] * len(records)
        # (topic, partition) -> list of (builder, record indexes)
        open_batches: dict[tuple[str, int], list[tuple[Any, list[int]]]] = {}
        sticky: dict[str, int] = {}
        known = self._partitions
        for i, record in enumerate(records):
            if record.size > limit:
                results[i] = MessageTooLarge(
                    f"send: the message is {record.size} bytes, over the {limit} bytes limit"
                )
                continue
            topic = record.topic
            parts = known.get(topic)
            if parts is None:
                try:
                    parts = await self._partitions_of(topic)
                except MQError as exc:
                    results[i] = exc
                    continue
            partition = record.partition
            if partition is not None:
                if partition not in parts:
                    results[i] = MQError(
                        f"send: topic {topic!r} has no partition {partition} (it has {len(parts)})"
                    )
                    continue
            elif record.key is not None:
                partition = parts[murmur2_partition(record.key, len(parts))]
            else:
                partition = sticky.get(topic, -1)
                if partition < 0:
                    partition = sticky[topic] = random.choice(parts)
            chunks = open_batches.setdefault((topic, partition), [])
            if not chunks:
                chunks.append((producer.create_batch(), []))
            builder, indexes = chunks[-1]
            appended = builder.append(
                timestamp=record.timestamp_ms,
                key=record.key,
                value=record.value,
                headers=list(record.headers),
            )
            if appended is None:  # full: start the next batch (its first record always fits)
                builder, indexes = producer.create_batch(), []
                chunks.append((builder, indexes))
                builder.append(
                    timestamp=record.timestamp_ms,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers),
                )
            indexes.append(i)
        flights: list[tuple[Any, str, int, list[int]]] = []
        for (topic, partition), chunks in open_batches.items():
            for builder, indexes in chunks:
                try:
                    with kafka_errors("send"):
                        future = await producer.send_batch(builder, topic, partition=partition)
                except MQError as exc:
                    for i in indexes:
                        results[i] = exc
                else:
                    flights.append((future, topic, partition, indexes))
        for future, topic, partition, indexes in flights:
            try:
                meta = await future
            except Exception as exc:
                err = translate(exc, "send")
                if err is None:
                    raise
                if err is not exc:
                    err.__cause__ = exc
                for i in indexes:
                    results[i] = err
                continue
            if meta is None:  # acks=0: the broker does not answer, so no offset is known
                for i in indexes:
                    results[i] = RecordMetadata(
                        topic, partition, -1, records[i].timestamp_ms / 1000
                    )
                continue
            broker_time = meta.timestamp if meta.timestamp not in (None, -1) else None
            for j, i in enumerate(indexes):
                ts = broker_time if broker_time is not None else records[i].timestamp_ms
                results[i] = RecordMetadata(topic, partition, meta.offset + j, ts / 1000)
        return [r if r is not None else MQError("send: no result") for r in results]

    # -- admin ---------------------------------------------------------------------
    async def create_topic(self, topic: str, partitions: int = 1) -> None:
        await self._bridge.run_asyncio(self._create_topic_aio, topic, partitions)

    async def _create_topic_aio(self, topic: str, partitions: int) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        self._require()
        if self._admin_lock is None:
            self._admin_lock = asyncio.Lock()
        async with self._admin_lock:
            with kafka_errors("create_topic"):
                if self._admin is None:
                    admin = await _started(AIOKafkaAdminClient(**self.client_options()), "admin")
                    if self._closed:  # closed while it started: nobody else will close it
                        await _close_quietly(admin, "admin")
                        raise MQUnavailable("create_topic: the Kafka backend is closed")
                    self._admin = admin
                response = await self._admin.create_topics([NewTopic(topic, partitions, 1)])
        for name, code, message in response.topic_errors:
            if code not in (0, _TOPIC_EXISTS):
                raise MQError(f"create_topic {name!r}: error {code}: {message}")
        self._partitions.pop(topic, None)

    async def partitions(self, topic: str) -> int:
        return await self._bridge.run_asyncio(self._count_partitions_aio, topic)

    async def _count_partitions_aio(self, topic: str) -> int:
        producer = self._require()
        with kafka_errors("metadata"):
            cluster = await producer.client.fetch_all_metadata()
        found = cluster.partitions_for_topic(topic)
        return len(found) if found else 0

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return await self._bridge.run_asyncio(self._end_offsets_aio, list(partitions))

    async def _end_offsets_aio(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:

        self._require()
        if self._offsets_lock is None:
            self._offsets_lock = asyncio.Lock()
        async with self._offsets_lock:
            return await self._end_offsets_locked(partitions)

    async def _end_offsets_locked(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        from aiokafka import AIOKafkaConsumer

        with kafka_errors("end_offsets"):
            if self._offsets is None:
                offsets = await _started(
                    AIOKafkaConsumer(**self.client_options(), enable_auto_commit=False), "offsets"
                )
                if self._closed:  # closed while it started: nobody else will close it
                    await _close_quietly(offsets, "offsets")
                    raise MQUnavailable("end_offsets: the Kafka backend is closed")
                self._offsets = offsets
            consumer = self._offsets
            tps = [_aio_tp(tp) for tp in partitions]
            listed = await consumer.end_offsets(tps)
            # Read each high watermark from a fetch response too: some Kafka-wire brokers
            # (Tansu 0.x) answer ListOffsets with the last *batch's* base offset + 1.
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, max(0, listed[tp] - 1))
            found: dict[Any, int] = {}
            while len(found) < len(tps):
                await consumer.getmany(*tps, timeout_ms=100, max_records=1)
                for tp in tps:
                    mark = consumer.highwater(tp)
                    if mark is not None:
                        found[tp] = max(mark, listed[tp])
        return {TopicPartition(tp.topic, tp.partition): off for tp, off in found.items()}

    async def committed(
        self, group_id: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        return await self._bridge.run_asyncio(self._committed_aio, group_id, list(partitions))

    async def _committed_aio(
        self, group_id: str, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        from aiokafka import AIOKafkaConsumer

        self._require()
        consumer = AIOKafkaConsumer(
            **self.client_options(), group_id=group_id, enable_auto_commit=False
        )
        try:
            with kafka_errors("committed"):
                await consumer.start()
                return {
                    TopicPartition(*tp): await consumer.committed(_aio_tp(tp)) for tp in partitions
                }
        finally:
            await _close_quietly(consumer, "committed")

    # -- consuming -------------------------------------------------------------------
    async def open_consumer(
        self, group_id: str, topics: Sequence[str], options: ConsumerOptions
    ) -> KafkaGroupConsumer:
        self._require()
        consumer = KafkaGroupConsumer(self, group_id, tuple(topics), options)
        await self._bridge.run_asyncio(consumer._start_aio)
        return consumer


class KafkaGroupConsumer:
    """One group member: an ``AIOKafkaConsumer`` whose poll loop runs on the asyncio side."""

    def __init__(
        self,
        backend: KafkaBackend,
        group_id: str,
        topics: tuple[str, ...],
        options: ConsumerOptions,
    ) -> None:
        self._backend = backend
        self._bridge = backend._bridge
        self._group_id = group_id
        self._topics = topics
        self._options = options
        self._consumer: Any = None
        self._epoch = 0
        # What the group assigned in the current epoch (the listener's word, not
        # ``consumer.assignment()``, which still lists the old partitions mid-rebalance).
        self._assigned: frozenset[Any] = frozenset()
        self._closed = False

    async def _start_aio(self) -> None:
        from aiokafka import AIOKafkaConsumer

        o = self._options
        options = self._backend.client_options()
        options["request_timeout_ms"] = _ms(o.request_timeout)
        consumer = AIOKafkaConsumer(
            **options,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset=o.auto_offset_reset,
            max_poll_records=o.max_records,
            session_timeout_ms=_ms(o.session_timeout),
            heartbeat_interval_ms=_ms(o.heartbeat_interval),
            rebalance_timeout_ms=_ms(o.rebalance_timeout),
            max_poll_interval_ms=_ms(o.max_poll_interval),
            fetch_max_wait_ms=_ms(o.fetch_max_wait),
        )
        self._consumer = await _started(consumer, "consumer")

    async def run(self, handler: GroupHandler) -> NoReturn:
        if self._consumer is None or self._closed:
            raise MQUnavailable("this consumer is closed")
        await self._bridge.run_asyncio(self._poll_aio, handler)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _poll_aio(self, handler: GroupHandler) -> NoReturn:
        consumer = self._consumer
        run_trio = self._bridge.run_trio
        consumer.subscribe(list(self._topics), listener=_listener(self, handler))
        timeout_ms = _ms(self._options.poll_timeout)
        max_records = self._options.max_records
        while True:
            with kafka_errors("poll"):
                data = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            # The epoch after the poll: aiokafka returns no records mid-rebalance, and a
            # poll that spans one returns the new assignment's records.
            epoch = self._epoch
            # Watermarks of the partitions the listener announced: mid-rebalance an empty
            # poll still sees the old assignment, whose partitions would come back as
            # phantoms. (Records need no filter: aiokafka returns none mid-rebalance, and
            # some right after the new assignment, before its listener call.)
            highwater = {}
            for tp in self._assigned:
                mark = consumer.highwater(tp)
                if mark is not None:
                    highwater[tp] = mark
            batch = Batch(epoch, data, highwater)
            # This code runs inside trio (trio-asyncio's loop is a trio task), so a sync
            # trio call is fine: no crossing when the consumer took the last batch up.
            # Otherwise wait on the trio side until it has (Session.caught_up): the next
            # getmany then parses into the memory the processed records gave back.
            if not handler.deliver_nowait(batch):
                # The crossing's bookkeeping (a future, a handle, a context) ends up in a
                # reference cycle: hand the batch over in a box the trio side empties, so
                # the records are freed by the processing, not by a later gc pass.
                await run_trio(_deliver_boxed, handler, [batch])
            del batch, data

    async def _on_revoked(self, handler: GroupHandler, revoked: Any) -> None:
        """aiokafka's coordinator task, before a rebalance: hand back the partitions."""
        self._epoch += 1  # first, synchronously: every batch polled before is now stale
        self._assigned = frozenset()
        if not revoked:
            return
        # The consumer as it is now: aclose() may drop our reference meanwhile, but its
        # stop() waits for this listener, so the commit below still goes out.
        consumer = self._consumer
        tps = frozenset(TopicPartition(tp.topic, tp.partition) for tp in revoked)
        offsets = await self._bridge.run_trio(handler.revoke, tps, self._epoch)
        if offsets and consumer is not None:
            try:
                with kafka_errors("commit"):
                    await consumer.commit({_aio_tp(tp): off for tp, off in offsets.items()})
            except MQError as exc:
                _log.warning("mq commit on revoke failed", group=self._group_id, error=str(exc))

    def _on_assigned(self, assigned: Any) -> None:
        """aiokafka's coordinator task, after a rebalance: the new epoch's partitions."""
        self._assigned = frozenset(assigned)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self._consumer is None:
            raise MQUnavailable("this consumer is closed")
        await self._bridge.run_asyncio(self._commit_aio, dict(offsets))

    async def _commit_aio(self, offsets: dict[TopicPartition, int]) -> None:
        with kafka_errors("commit"):
            await self._consumer.commit({_aio_tp(tp): off for tp, off in offsets.items()})

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await self._bridge.run_asyncio(_close_member, consumer)


async def _close_member(consumer: Any) -> None:
    """:func:`_stop_member`, never raising a broker error (logged) nor hanging."""
    try:
        await asyncio.wait_for(_stop_member(consumer), JOIN_GRACE + 2 * _CLOSE_TIMEOUT)
    except Exception as exc:
        _log.warning("mq close failed", client="consumer", error=f"{type(exc).__name__}: {exc}")


async def _deliver_boxed(handler: GroupHandler, box: list[Batch]) -> None:
    """Trio side of a waiting hand-over: take the batch out of ``box``, then deliver it."""
    await handler.deliver(box.pop())


def _listener(owner: KafkaGroupConsumer, handler: GroupHandler) -> Any:
    from aiokafka import ConsumerRebalanceListener

    class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await owner._on_revoked(handler, revoked)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            owner._on_assigned(assigned)
            _log.info(
                "mq partitions assigned",
                group=owner._group_id,
                partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned),
            )

    return _Listener()
