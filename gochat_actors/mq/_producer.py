"""``Producer``: the facade and its actor. ``send`` queues a record for the actor's flusher,
which sends whatever is queued as one batch (one bridge crossing per batch, up to
``max_in_flight`` batches at once) and hands each caller its own result."""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any, NoReturn, TypeVar

import trio

from supervisors import ChildSpec, cleanup_scope

from .._bridge import Bridge
from .._exceptions import BridgeError, MessageTooLarge, MQError, MQTimeout, MQUnavailable
from .._slot import Slot
from ..log import current_trace_id, get_logger, new_trace_id
from ..metrics import Metrics
from ._connect import Acks, Connection
from ._memory import MemoryBroker
from ._message import TRACE_ID_HEADER, outgoing_record
from ._protocol import MQBackend, OutgoingRecord, RecordMetadata, TopicPartition
from ._settings import MQSettings

__all__ = ["Producer"]

_log = get_logger("gochat_actors.mq")

T = TypeVar("T")


def _fresh(err: Exception) -> Exception:
    """A copy of a batch-wide error for one caller (one exception object, one traceback)."""
    try:
        copy = type(err)(*err.args)
    except Exception:  # an exception class with an unusual __init__
        return err
    copy.__cause__ = err.__cause__
    return copy


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
        return _fresh(error)


def _log_send_failure(record: OutgoingRecord, error: Exception) -> None:
    trace_id = next((v for k, v in record.headers if k == TRACE_ID_HEADER), b"")
    _log.error(
        "mq send failed",
        topic=record.topic,
        trace_id=trace_id.decode("utf-8", "replace"),
        error=f"{type(error).__name__}: {error}",
    )


def _check_timeout(timeout: object) -> float:
    """A call's own ``timeout=``, checked before anything is queued: a NaN deadline
    would reach the reaper every send shares (and stop it), a non-positive one would
    send the message and then report it timed out."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if not timeout > 0:  # NaN included
        raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
    return float(timeout)


Results = list[RecordMetadata | Exception]
_topic_of = attrgetter("topic")
_OWN_HEADERS = 1024  # more than trace_id + timestamp take (a checked trace_id is <= 128)


class _Pending:
    """Queued records (one send, or a chunk of ``send_many``) and the task waiting for
    their results: ``results[at : at + len(records)]`` once ``done`` (the flight's list,
    shared, not a copy per send). A bare trio wait: on the per-message path an Event per
    message costs more than the rest of it."""

    __slots__ = ("at", "deadline", "done", "records", "results", "task")

    def __init__(self, records: list[OutgoingRecord], deadline: float) -> None:
        self.records = records
        self.deadline = deadline
        self.results: Results = []
        self.at = 0
        self.done = False
        self.task: trio.lowlevel.Task | None = None

    def finish(self, results: Results, at: int = 0) -> None:
        if self.done:
            return
        self.done = True
        self.results = results
        self.at = at
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def fail(self, error: Exception) -> None:
        if not self.done:
            self.finish([_fresh(error) for _ in self.records])

    def mine(self) -> Results:
        """This send's results (a copy)."""
        return self.results[self.at : self.at + len(self.records)]

    def abort(self, _: Any) -> trio.lowlevel.Abort:
        """The waiting task was cancelled (the records stay queued: they may still go)."""
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def wait(self) -> None:
        if not self.done:
            self.task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self.abort)
        else:
            await trio.lowlevel.checkpoint()


class _Deadlines:
    """The deadlines of the sends waiting for a result, for the reaper.

    Sends with the producer's timeout arrive in deadline order, so most go to a FIFO
    (O(1) in and out); one with an earlier deadline than the FIFO's last goes to a heap.
    Finished sends leave the fronts after every flush (:meth:`prune`), and both are
    compacted when mostly finished: what is kept is proportional to the sends actually
    waiting, never to the send rate times the timeout.
    """

    __slots__ = ("_limit", "_seq", "fifo", "heap")

    def __init__(self) -> None:
        self.fifo: deque[_Pending] = deque()
        self.heap: list[tuple[float, int, _Pending]] = []
        self._seq = itertools.count()
        self._limit = 1024

    def add(self, pending: _Pending) -> None:
        fifo = self.fifo
        if not fifo or pending.deadline >= fifo[-1].deadline:
            fifo.append(pending)
        else:
            heapq.heappush(self.heap, (pending.deadline, next(self._seq), pending))
        if len(fifo) + len(self.heap) > self._limit:
            self._compact()

    def _compact(self) -> None:
        self.fifo = deque(p for p in self.fifo if not p.done)
        self.heap = [entry for entry in self.heap if not entry[2].done]
        heapq.heapify(self.heap)
        self._limit = max(1024, 2 * (len(self.fifo) + len(self.heap)))

    def prune(self) -> None:
        """Drop the finished sends at the fronts."""
        fifo, heap = self.fifo, self.heap
        while fifo and fifo[0].done:
            fifo.popleft()
        while heap and heap[0][2].done:
            heapq.heappop(heap)

    def pop_expired(self, now: float) -> list[_Pending]:
        """Remove and return the unfinished sends whose deadline is ``now`` or before."""
        self.prune()
        expired: list[_Pending] = []
        fifo, heap = self.fifo, self.heap
        while fifo and (fifo[0].done or fifo[0].deadline <= now):
            expired.append(fifo.popleft())
        while heap and (heap[0][2].done or heap[0][0] <= now):
            expired.append(heapq.heappop(heap)[2])
        return [p for p in expired if not p.done]

    def next_deadline(self) -> float:
        fifo, heap = self.fifo, self.heap
        return min(fifo[0].deadline if fifo else math.inf, heap[0][0] if heap else math.inf)


class _Sender:
    """One incarnation's queue and flusher. The flusher runs shielded, so a stopping
    actor still sends what was queued (within its shutdown budget). Send timeouts are
    enforced by one reaper task over the waiting sends' deadlines, not a cancel scope
    per send."""

    def __init__(self, producer: Producer, backend: MQBackend) -> None:
        self.backend = backend
        self._producer = producer
        self._queue: deque[_Pending] = deque()
        self._queued = 0  # records in the queue
        self._deadlines = _Deadlines()
        self._work = trio.Event()
        self._reaper_wakeup = trio.Event()
        self._reaper_at = math.inf  # when the reaper wakes up next
        self._reaper_scope = trio.CancelScope()
        self._space = trio.lowlevel.ParkingLot()
        self._flight_done = trio.lowlevel.ParkingLot()
        self._in_flight = 0
        self._closed = False
        self.scope = trio.CancelScope(shield=True)
        self.finished = trio.Event()

    def enqueue(self, records: list[OutgoingRecord], deadline: float) -> _Pending | None:
        """Queue ``records`` (at most ``max_batch``) if there is room now; the caller then
        waits on the returned entry. None: no room, or stopping (use :meth:`send`)."""
        queued = self._queued
        if self._closed or (queued and queued + len(records) > self._producer._max_pending):
            return None
        pending = _Pending(records, deadline)
        self._queue.append(pending)
        self._queued = queued + len(records)
        self._deadlines.add(pending)
        if deadline < self._reaper_at:
            self._reaper_wakeup.set()
        self._work.set()
        return pending

    async def queue(self, records: list[OutgoingRecord], deadline: float) -> _Pending | None:
        """Queue ``records`` (at most ``max_batch``), waiting for room up to ``deadline``.
        None: this incarnation is stopping (queue them on the next one)."""
        pending = self.enqueue(records, deadline)
        if pending is None:
            limit = self._producer._max_pending
            with trio.move_on_at(deadline):
                while self._queued + len(records) > limit and self._queued and not self._closed:
                    await self._space.park()
            if self._closed:
                return None
            pending = self.enqueue(records, deadline)
            if pending is None:  # still no room at the deadline: never queued, never sent
                raise MQTimeout(
                    f"send to {records[0].topic!r}: no room in the queue within the timeout "
                    f"(max_pending={limit}); not sent"
                )
        return pending

    @staticmethod
    def _timeout(records: list[OutgoingRecord]) -> MQTimeout:
        return MQTimeout(
            f"send to {records[0].topic!r}: not acknowledged within the timeout "
            "(the message may still be delivered)"
        )

    async def _reap(self) -> None:
        """Time out the sends whose deadline passed (their records may still go out)."""
        deadlines = self._deadlines
        with self._reaper_scope:
            while True:
                for pending in deadlines.pop_expired(trio.current_time()):
                    pending.fail(self._timeout(pending.records))
                self._reaper_wakeup = trio.Event()
                self._reaper_at = deadlines.next_deadline()
                with trio.move_on_at(self._reaper_at):
                    await self._reaper_wakeup.wait()

    def close(self) -> None:
        """No new records; the flusher exits once the queue and flights are done."""
        self._closed = True
        self._work.set()
        self._space.unpark_all()

    def _take(self) -> list[_Pending]:
        """Queued entries up to ``max_batch`` records (always at least one entry)."""
        limit = self._producer._max_batch
        queue = self._queue
        batch = [queue.popleft()]
        count = len(batch[0].records)
        while queue and count + len(queue[0].records) <= limit:
            entry = queue.popleft()
            batch.append(entry)
            count += len(entry.records)
        self._queued -= count
        self._space.unpark_all()
        return batch

    async def run(self) -> None:
        producer = self._producer
        try:
            with self.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._reap)
                    while True:
                        while not self._queue and not self._closed:
                            await self._work.wait()
                            self._work = trio.Event()
                        if not self._queue:
                            break
                        while self._in_flight >= producer._max_in_flight:
                            await self._flight_done.park()
                        self._in_flight += 1
                        nursery.start_soon(self._flush, self._take())
                    # Stopping: the reaper keeps timing sends out until the last flight
                    # is back (a send's timeout holds during a shutdown flush too).
                    while self._in_flight:
                        await self._flight_done.park()
                    self._reaper_scope.cancel()
        finally:
            for pending in self._queue:
                pending.fail(MQUnavailable("the producer stopped before sending"))
            self._queue.clear()
            self._queued = 0
            self.finished.set()

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            records = (
                batch[0].records
                if len(batch) == 1
                else [r for pending in batch for r in pending.records]
            )
            try:
                results = await self.backend.send_batch(records)
            except (MQError, BridgeError) as exc:
                err = exc if isinstance(exc, MQError) else MQUnavailable(f"send: {exc}")
                if err is not exc:
                    err.__cause__ = exc
                results = [err] * len(records)
            finally:
                self._in_flight -= 1
                self._flight_done.unpark_all()
            if len(results) != len(records):
                raise AssertionError(f"{len(results)} results for {len(records)} records")
            counts = Counter(map(_topic_of, records))
            failed = [(i, r) for i, r in enumerate(results) if isinstance(r, Exception)]
            for i, error in failed:
                _log_send_failure(records[i], error)
                counts[records[i].topic] -= 1
            self._producer._count_produced(counts)
            if len(batch) == len(records):  # one record each: the per-message path
                for at, pending in enumerate(batch):
                    pending.finish(results, at)
            else:
                at = 0
                for pending in batch:
                    pending.finish(results, at)
                    at += len(pending.records)
            batch = []
        finally:
            for pending in batch:  # only if the flight did not finish (cancelled, a bug)
                pending.fail(MQUnavailable("the producer stopped before the broker answered"))
            self._deadlines.prune()


class Producer:
    """Sends messages to Kafka (or the in-memory broker) through a supervised actor.

    Build it once from ``settings.mq``; add :meth:`spec` to the tree (after the bridge,
    ``depends_on=("bridge",)`` for Kafka); call :meth:`send` from any task. While the
    actor restarts, ``send`` waits for the next incarnation up to its timeout, then
    raises :class:`~gochat_actors.MQUnavailable`.

    Records get ``acks`` (default ``"all"``: every in-sync replica), a ``trace_id`` header
    (the current log context's, or a new one) and a ``timestamp`` header (unix seconds),
    as the Go original. Concurrent sends are batched: one bridge crossing per batch.
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
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._max_in_flight = max_in_flight
        self._max_bytes = max_message_bytes
        self._probe_interval = float(probe_interval)
        self._slot: Slot[_Sender] = Slot("mq producer", error=MQUnavailable)
        self._produced: dict[str, Any] = {}

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
            sender = _Sender(self, backend)
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

        ``headers`` maps names to ``bytes`` (the ``trace_id``/``timestamp`` headers are
        added unless given). ``partition=None`` hashes the key (murmur2, as Kafka), or
        picks one for keyless records. ``timeout`` (default: the producer's) covers
        waiting for the actor, for queue space and for the acknowledgement.

        Raises ``TypeError``/``ValueError`` on bad arguments, :class:`MessageTooLarge`,
        :class:`MQTimeout` (the message may still be delivered), :class:`MQUnavailable`,
        :class:`MQError`. A cancelled send may still be delivered.

        Example::

            meta = await producer.send("chat.messages", b'{"text": "hi"}', key=b"room:42")
        """
        record = outgoing_record(topic, value, key, headers, partition=partition)
        if headers or len(value or b"") + len(key or b"") + _OWN_HEADERS > self._max_bytes:
            self._check_size(record)  # exact; else only our two headers: it fits
        wait = self._timeout if timeout is None else _check_timeout(timeout)
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
            raise _fresh(result)
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
        carry one ``trace_id`` (the current one, or one new one). Returns the metadata in
        order. The values land in input order (per partition): past ``max_batch`` they
        go in chunks, each sent once the one before is acknowledged.

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
        trace_id = current_trace_id() or new_trace_id()
        records = [
            outgoing_record(topic, v, k, header_list, trace_id=trace_id)
            for v, k in zip(value_list, key_list, strict=True)
        ]
        for record in records:
            self._check_size(record)
        wait = self._timeout if timeout is None else _check_timeout(timeout)
        deadline = trio.current_time() + wait
        # One chunk (max_batch records) at a time, each queued once the one before is
        # acknowledged: flights run concurrently and a broker may apply them in any
        # order, so this is what keeps one call's values in input order per partition.
        results: list[RecordMetadata] = []
        total = len(records)
        step = self._max_batch
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
        self, records: list[OutgoingRecord], deadline: float, sender: _Sender
    ) -> _Pending:
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

    async def _admin(
        self, what: str, timeout: float | None, fn: Callable[[MQBackend], Awaitable[T]]
    ) -> T:
        wait = self._timeout if timeout is None else _check_timeout(timeout)
        deadline = trio.current_time() + wait
        sender = await self._slot.get(wait)
        with trio.move_on_at(deadline):
            return await fn(sender.backend)
        raise MQTimeout(f"{what}: no answer within {wait:g}s")

    async def create_topic(
        self, topic: str, partitions: int = 1, *, timeout: float | None = None
    ) -> None:
        """Create ``topic`` with ``partitions`` partitions (an existing one is left as is).

        Example::

            await producer.create_topic("chat.messages", partitions=8)
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty str, got {topic!r}")
        if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
            raise ValueError(f"partitions must be an int >= 1, got {partitions!r}")
        await self._admin(
            f"create_topic {topic!r}", timeout, lambda b: b.create_topic(topic, partitions)
        )

    async def end_offsets(
        self, partitions: Sequence[TopicPartition], *, timeout: float | None = None
    ) -> dict[TopicPartition, int]:
        """The next offset to be written in each partition (its high watermark).

        Example::

            ends = await producer.end_offsets([TopicPartition("chat.messages", 0)])
        """
        return await self._admin("end_offsets", timeout, lambda b: b.end_offsets(partitions))

    async def committed(
        self, group_id: str, partitions: Sequence[TopicPartition], *, timeout: float | None = None
    ) -> dict[TopicPartition, int | None]:
        """The offsets ``group_id`` committed (None where it never did).

        Example::

            done = await producer.committed("persister", [TopicPartition("chat.messages", 0)])
        """
        return await self._admin("committed", timeout, lambda b: b.committed(group_id, partitions))

    def __repr__(self) -> str:
        state = "running" if self._slot.value is not None else "stopped"
        return f"<Producer {self.settings.brokers} {state}>"
