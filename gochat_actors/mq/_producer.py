"""``Producer``: the facade and its actor. ``send`` queues a record for the actor's
:class:`~gochat_actors.mq._sender.Sender`, which sends whatever is queued as one batch and
hands each caller its own result."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

import trio

from supervisors import ChildSpec, cleanup_scope

from .._bridge import Bridge
from .._exceptions import MessageTooLarge, MQError, MQUnavailable
from .._slot import Slot
from .._tracing import SPANS, message_trace, send_span
from ..log import get_logger
from ..metrics import Metrics
from ._admin import Admin
from ._connect import Acks, Connection
from ._memory import MemoryBroker
from ._message import outgoing_record
from ._protocol import MQBackend, OutgoingRecord, RecordMetadata, TopicPartition
from ._sender import Pending, Sender, SendLimits, check_timeout, fresh_error
from ._settings import MQSettings

__all__ = ["Producer"]

_log = get_logger("gochat_actors.mq")

T = TypeVar("T")


def _partial(
    error: Exception, topic: str, total: int, acked: int, failed: int, unsent: int
) -> Exception:
    """``send_many``'s error: the first failure's type and text, and what became of the
    call's other values (acknowledged, failed with it, never sent)."""
    text = (
        f"send_many to {topic!r}: {acked} of {total} acknowledged, {failed} failed, "
        f"{unsent} not sent; first failure: {error}"
    )
    try:
        return type(error)(text)
    except Exception:  # an exception class with an unusual __init__
        return fresh_error(error)


_OWN_HEADERS = 1024  # more than traceparent + trace_id + timestamp take (trace_id <= 128)


class Producer:
    """Sends messages to Kafka (or the in-memory broker) through a supervised actor.

    Build it once from ``settings.mq``; add :meth:`spec` to the tree (after the bridge,
    ``depends_on=("bridge",)`` for Kafka); call :meth:`send` from any task. While the
    actor restarts, ``send`` waits for the next incarnation up to its timeout, then
    raises :class:`~gochat_actors.MQUnavailable`.

    Records get ``acks`` (default ``"all"``: every in-sync replica), a ``trace_id`` header
    (the current log context's, or a new one) and a ``timestamp`` header (unix seconds),
    as the Go original, and a W3C ``traceparent`` header in the same trace
    (:mod:`gochat_actors.tracing`). Concurrent sends are batched: one bridge crossing per batch.
    On shutdown the actor stops taking new sends and flushes what is queued within its
    shutdown budget.

    Example::

        producer = Producer(settings.mq, bridge=bridge, metrics=metrics)
        async with open_supervisor([bridge_spec, producer.spec(depends_on=("bridge",))]):
            meta = await producer.send("chat.messages", b"hi", key=b"room:42")
    """

    def __init__(
        self,
        settings: MQSettings,
        *,
        bridge: Bridge | None = None,
        metrics: Metrics | None = None,
        broker: MemoryBroker | None = None,
        acks: Acks = "all",
        timeout: float = 10.0,
        connect_timeout: float = 10.0,
        max_message_bytes: int = 1_048_576,
        max_batch: int = 1000,
        max_pending: int = 10_000,
        max_in_flight: int = 4,
        probe_interval: float = 2.0,
    ) -> None:
        self._conn = Connection(
            settings,
            bridge=bridge,
            broker=broker,
            acks=acks,
            request_timeout=timeout,
            max_message_bytes=max_message_bytes,
        )
        for name, value in (
            ("max_batch", max_batch),
            ("max_pending", max_pending),
            ("max_in_flight", max_in_flight),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name, seconds in (
            ("connect_timeout", connect_timeout),
            ("probe_interval", probe_interval),
        ):
            if not isinstance(seconds, int | float) or not 0 < seconds < math.inf:
                raise ValueError(f"{name} must be a number of seconds > 0, got {seconds!r}")
        self.metrics = metrics
        self._timeout = float(timeout)
        self._connect_timeout = float(connect_timeout)
        self._limits = SendLimits(max_batch, max_pending, max_in_flight)
        self._max_bytes = max_message_bytes
        self._probe_interval = float(probe_interval)
        self._slot: Slot[Sender] = Slot("mq producer", error=MQUnavailable)
        self._produced: dict[str, Any] = {}
        self._admin = Admin(self._backend, self._timeout)

    async def _backend(self, wait: float) -> MQBackend:
        return (await self._slot.get(wait)).backend

    @property
    def settings(self) -> MQSettings:
        """The ``[mq]`` settings this producer was built from."""
        return self._conn.settings

    @property
    def connection(self) -> Connection:
        """Settings, bridge and memory broker, for consumers built beside this producer."""
        return self._conn

    # -- the actor -------------------------------------------------------------------
    def spec(self, id: str = "producer", **spec_options: Any) -> ChildSpec:
        """The child that owns the connection: connects, then serves :meth:`send`.

        ``spec_options`` go to :class:`supervisors.ChildSpec` (``depends_on``,
        ``shutdown`` -- the flush budget, default 5 s --, ``restart``...).

        Example::

            children.append(producer.spec("producer", depends_on=("bridge",)))
        """
        spec_options.setdefault("shutdown", 5.0)
        return ChildSpec(id, self._run, **spec_options)

    async def _run(
        self, *, task_status: trio.TaskStatus[Producer] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        async with self._conn.serve(
            "producer", connect_timeout=self._connect_timeout, probe_interval=self._probe_interval
        ) as (backend, watch):
            sender = Sender(self._limits, backend, self._count_produced)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sender.run)
                    self._slot.fill(sender)
                    try:
                        task_status.started(self)
                        _log.info("mq producer started", brokers=self.settings.brokers)
                        await watch.run(backend)
                    finally:
                        self._slot.clear()
                        sender.close()
                        with cleanup_scope() as flush:
                            # keep a tenth of the budget (at most 0.5 s) for closing
                            left = flush.deadline - trio.current_time()
                            flush.deadline -= min(0.5, max(0.0, left) / 10)
                            await sender.finished.wait()
                        sender.scope.cancel()
            finally:
                self._slot.clear()
        raise AssertionError("unreachable")  # pragma: no cover

    def _count_produced(self, counts: Mapping[str, int]) -> None:
        if self.metrics is None:
            return
        for topic, n in counts.items():
            counter = self._produced.get(topic)
            if counter is None:
                counter = self._produced[topic] = self.metrics.mq_messages_produced.labels(
                    topic=topic
                )
            counter.inc(n)

    # -- sending ---------------------------------------------------------------------
    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None = None,
        *,
        partition: int | None = None,
        timeout: float | None = None,
    ) -> RecordMetadata:
        """Send one message and wait for the broker's acknowledgement.

        ``headers`` maps names to ``bytes`` (the ``traceparent``/``trace_id``/``timestamp``
        headers are added unless given). ``partition=None`` hashes the key (murmur2, as Kafka), or
        picks one for keyless records. ``timeout`` (default: the producer's) covers
        waiting for the actor, for queue space and for the acknowledgement.

        Raises ``TypeError``/``ValueError`` on bad arguments, :class:`MessageTooLarge`,
        :class:`MQTimeout` (the message may still be delivered), :class:`MQUnavailable`,
        :class:`MQError`. A cancelled send may still be delivered.

        Example::

            meta = await producer.send("chat.messages", b'{"text": "hi"}', key=b"room:42")
        """
        # The send span by hand, not `with`: spans off, no hook is called at all (send_span,
        # __enter__ and __exit__ are 3 Python calls a send on the hot path; a coroutine
        # level of its own costs as much; docs/benchmarks.md). Spans never suppress an error.
        span = None if SPANS.on is None and SPANS.checked else send_span(topic, partition)
        if span is not None:
            span.__enter__()
        try:
            record = outgoing_record(topic, value, key, headers, partition=partition)
            if headers or len(value or b"") + len(key or b"") + _OWN_HEADERS > self._max_bytes:
                self._check_size(record)  # exact; else only our headers: they fit
            wait = self._timeout if timeout is None else check_timeout(timeout)
            deadline = trio.current_time() + wait
            sender = self._slot.value or await self._slot.get(wait)
            pending = sender.enqueue([record], deadline)
            if pending is None:
                pending = await self._queue([record], deadline, sender)
                await pending.wait()
            else:  # waiting inline: on the per-message path each coroutine level costs
                pending.task = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(pending.abort)
            result = pending.results[pending.at]
            if isinstance(result, Exception):
                raise fresh_error(result)
        except BaseException as exc:  # `exc` is unbound on leaving: no frame <-> error cycle
            if span is not None:
                span.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if span is not None:
            span.__exit__(None, None, None)
        return result

    async def send_many(
        self,
        topic: str,
        values: Iterable[bytes | None],
        *,
        keys: Iterable[bytes | None] | None = None,
        headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None = None,
        timeout: float | None = None,
    ) -> list[RecordMetadata]:
        """Send many messages to ``topic`` and wait for all their acknowledgements.

        The bulk form of :meth:`send` (one task, one wait for the lot): ``keys`` pairs
        with ``values`` (same length), ``headers`` go on every message, and they all
        carry one ``trace_id`` (the current one, or one new one) and one ``traceparent``.
        Returns the metadata in order. The values land in input order (per partition):
        past ``max_batch`` they go in chunks, each sent once the one before is acknowledged.

        If a chunk fails, no later chunk is sent and the first failure's type is raised
        (:class:`MQTimeout`: the chunk may still be delivered; :class:`MQUnavailable`...)
        once that chunk is done, its text saying how many values were acknowledged,
        failed and not sent (sending the lot again duplicates the acknowledged ones).

        Example::

            metas = await producer.send_many("chat.fanout", payloads, keys=user_keys)
        """
        value_list = list(values)
        key_list: list[bytes | None] = [None] * len(value_list) if keys is None else list(keys)
        if len(key_list) != len(value_list):
            raise ValueError(f"keys has {len(key_list)} items, values {len(value_list)}")
        if not value_list:
            return []
        header_list = (
            None
            if headers is None
            else list(headers.items() if isinstance(headers, Mapping) else headers)
        )
        with send_span(topic, count=len(value_list)):  # a no-op while spans are off
            return await self._send_many(topic, value_list, key_list, header_list, timeout)

    async def _send_many(
        self,
        topic: str,
        value_list: list[bytes | None],
        key_list: list[bytes | None],
        header_list: list[tuple[str, bytes]] | None,
        timeout: float | None,
    ) -> list[RecordMetadata]:
        ids = message_trace()  # one trace and one send span for the lot
        records = [
            outgoing_record(topic, v, k, header_list, trace_headers=ids)
            for v, k in zip(value_list, key_list, strict=True)
        ]
        for record in records:
            self._check_size(record)
        wait = self._timeout if timeout is None else check_timeout(timeout)
        deadline = trio.current_time() + wait
        # One chunk (max_batch records) at a time, each queued once the one before is
        # acknowledged: flights run concurrently and a broker may apply them in any
        # order, so this is what keeps one call's values in input order per partition.
        results: list[RecordMetadata] = []
        total = len(records)
        step = self._limits.max_batch
        for at in range(0, total, step):
            chunk = records[at : at + step]
            try:
                left = max(0.0, deadline - trio.current_time())
                sender = self._slot.value or await self._slot.get(left)
                pending = sender.enqueue(chunk, deadline) or await self._queue(
                    chunk, deadline, sender
                )
            except MQError as exc:
                raise _partial(exc, topic, total, len(results), 0, total - at) from exc
            await pending.wait()
            mine = pending.mine()
            failed = [r for r in mine if isinstance(r, Exception)]
            if failed:
                ok = len(mine) - len(failed)
                raise _partial(
                    failed[0], topic, total, len(results) + ok, len(failed), total - at - len(chunk)
                ) from failed[0]
            results.extend(mine)  # type: ignore[arg-type]  # no Exception among them
        return results

    async def _queue(
        self, records: list[OutgoingRecord], deadline: float, sender: Sender
    ) -> Pending:
        """Queue ``records``, waiting for room; when the incarnation stops meanwhile,
        on the next one (up to ``deadline``: then the slot's ``MQUnavailable``)."""
        while True:
            pending = await sender.queue(records, deadline)
            if pending is not None:
                return pending
            sender = await self._slot.get(max(0.0, deadline - trio.current_time()))

    def _check_size(self, record: OutgoingRecord) -> None:
        limit = self._conn.max_message_bytes
        if record.size > limit:
            raise MessageTooLarge(
                f"send to {record.topic!r}: the message is {record.size} bytes, over the "
                f"{limit} bytes limit"
            )

    async def create_topic(
        self, topic: str, partitions: int = 1, *, timeout: float | None = None
    ) -> None:
        """Create ``topic`` with ``partitions`` partitions (an existing one is left as is).

        Example::

            await producer.create_topic("chat.messages", partitions=8)
        """
        await self._admin.create_topic(topic, partitions, timeout=timeout)

    async def end_offsets(
        self, partitions: Sequence[TopicPartition], *, timeout: float | None = None
    ) -> dict[TopicPartition, int]:
        """The next offset to be written in each partition (its high watermark).

        Example::

            ends = await producer.end_offsets([TopicPartition("chat.messages", 0)])
        """
        return await self._admin.end_offsets(partitions, timeout=timeout)

    async def committed(
        self, group_id: str, partitions: Sequence[TopicPartition], *, timeout: float | None = None
    ) -> dict[TopicPartition, int | None]:
        """The offsets ``group_id`` committed (None where it never did).

        Example::

            done = await producer.committed("persister", [TopicPartition("chat.messages", 0)])
        """
        return await self._admin.committed(group_id, partitions, timeout=timeout)

    def __repr__(self) -> str:
        state = "running" if self._slot.value is not None else "stopped"
        return f"<Producer {self.settings.brokers} {state}>"
