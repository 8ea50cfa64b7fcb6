"""Consumer groups as supervised actors: at-least-once, retries, a dead-letter topic.

One incarnation of the actor (a :class:`_Session`)::

    backend poll loop ──deliver──▶ bounded channel ──▶ dispatcher ──▶ partition queues
    (asyncio side for Kafka)        (backpressure)      (bounded)        │ one worker at a
                                                                         ▼ time per partition
                                  commit loop ◀── positions ◀── `concurrency` workers
                                  (periodic, on revoke, on stop)    (processor, retries, DLQ)

A partition's position is the offset after the last message it finished (processed or
dead-lettered); workers take a partition's messages in order, so that is also the
highest contiguous processed offset + 1, and it is all that is ever committed.
"""

from __future__ import annotations

import functools
import inspect
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import trio

from supervisors import (
    Backoff,
    ChildHandle,
    ChildSpec,
    Supervisor,
    cleanup_scope,
    current_child,
    progress,
)

from .._bridge import Bridge
from .._exceptions import BridgeError, MessageTooLarge, MQError, MQUnavailable
from .._tracing import process_ended, process_started
from ..log import get_logger, new_trace_id, trace_context
from ..metrics import Metrics, observe_many
from ._connect import BrokerWatch, Connection
from ._memory import MemoryBroker
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
from ._protocol import (
    Batch,
    ConsumerOptions,
    GroupConsumer,
    MQBackend,
    OutgoingRecord,
    RawRecord,
    TopicPartition,
)
from ._settings import MQSettings

__all__ = ["Consumer", "ConsumerStatistics", "Processor", "consumer_spec"]

_log = get_logger("gochat_actors.mq")

Processor = Callable[[Message], Awaitable[None]]
"""A message handler: ``async def persist(msg: Message) -> None``. Raising retries it."""

_ERROR_TEXT_LIMIT = 1000
_CHANNEL_BATCHES = 4  # polled batches waiting for the dispatcher (bounded)
_SLICE = 0.002  # seconds a worker processes one partition before others (and I/O) run


def _is_async_callable(obj: object) -> bool:
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(
        getattr(obj, "__call__", None)  # noqa: B004
    )


_WORKERS = "workers"


class _Started:
    """The task status the nested workers supervisor reports to: once the workers run,
    the consumer actor is ready (with the Consumer as its value)."""

    def __init__(self, status: trio.TaskStatus[Consumer], consumer: Consumer) -> None:
        self._status = status
        self._consumer = consumer

    def started(self, value: object = None) -> None:
        self._status.started(self._consumer)
        _log.info(
            "mq consumer started",
            group=self._consumer.group_id,
            topics=list(self._consumer.topics),
            concurrency=self._consumer._concurrency,
        )


@dataclass(frozen=True, slots=True)
class ConsumerStatistics:
    """What :meth:`Consumer.statistics` returns (counters since the Consumer was built).

    ``processed`` counts messages finished (dead-lettered ones included), ``retries``
    failed attempts that were retried, ``lag`` the messages known but not yet processed
    over the assigned partitions, ``buffered`` those fetched and waiting in memory,
    ``sessions`` the incarnations started (restarts + 1).
    """

    processed: int
    retries: int
    dead_lettered: int
    assigned: frozenset[TopicPartition]
    lag: int
    buffered: int
    in_flight: int
    broker_reachable: bool
    running: bool
    sessions: int


class _Partition:
    """One assigned partition within one session and one rebalance epoch."""

    __slots__ = (
        "busy",
        "committed",
        "fetched",
        "highwater",
        "idle",
        "in_flight",
        "position",
        "queue",
        "revoked",
        "scheduled",
        "scope",
        "tp",
    )

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.queue: deque[RawRecord] = deque()
        self.position: int | None = None  # next offset to process
        self.committed: int | None = None
        self.fetched: int | None = None  # offset after the last record fetched
        self.highwater: int | None = None
        self.busy = False
        self.scheduled = False
        self.revoked = False
        self.in_flight = False
        self.scope: trio.CancelScope | None = None
        self.idle = trio.Event()
        self.idle.set()

    @property
    def lag(self) -> int:
        """Messages known to exist here that are not processed yet."""
        if self.highwater is None:
            return len(self.queue) + self.in_flight
        base = self.position if self.position is not None else self.fetched
        if base is None:
            base = self.highwater
        return max(0, self.highwater - base)


class Consumer:
    """A consumer-group member as a supervised actor: at-least-once processing with
    retries and a dead-letter topic. Build it once; add :meth:`spec` to a supervisor
    (or use :func:`consumer_spec`, which does both).

    Messages of one partition are processed in offset order, one at a time; up to
    ``concurrency`` partitions at once. A processor that raises is retried in place
    (``retries`` times, ``retry_backoff`` between attempts); then the message goes to
    ``dead_letter_topic`` (with its error, origin and attempts in headers) and counts as
    processed. Without a dead-letter topic it is logged and skipped. The committed offset
    of a partition is always the offset after its last finished message: a message is
    committed only once processed or dead-lettered (at-least-once; duplicates are
    possible for messages in flight when the consumer stops or loses the partition).

    Example::

        consumer = Consumer(topics=["chat.messages"], group_id="persister",
                            processor=persist, settings=settings.mq, bridge=bridge,
                            dead_letter_topic="chat.messages.dlq")
        children.append(consumer.spec("persister", depends_on=("bridge",)))
    """

    def __init__(
        self,
        *,
        topics: Sequence[str],
        group_id: str,
        processor: Processor,
        settings: MQSettings | None = None,
        bridge: Bridge | None = None,
        metrics: Metrics | None = None,
        broker: MemoryBroker | None = None,
        concurrency: int = 8,
        retries: int = 3,
        retry_backoff: Backoff | None = None,
        dead_letter_topic: str | None = None,
        processing_timeout: float | None = None,
        commit_interval: float = 1.0,
        revoke_timeout: float = 5.0,
        max_buffered: int = 5000,
        options: ConsumerOptions | None = None,
        connect_timeout: float = 10.0,
        probe_interval: float = 2.0,
        request_timeout: float = 10.0,
    ) -> None:
        self._conn = Connection(
            settings if settings is not None else MQSettings(),
            bridge=bridge,
            broker=broker,
            request_timeout=request_timeout,
        )
        if isinstance(topics, str) or not isinstance(topics, Sequence) or not topics:
            raise TypeError(f"topics must be a non-empty list of topic names, got {topics!r}")
        if not all(isinstance(t, str) and t for t in topics):
            raise ValueError(f"topics must be non-empty str, got {topics!r}")
        if not isinstance(group_id, str) or not group_id:
            raise ValueError(f"group_id must be a non-empty str, got {group_id!r}")
        if not _is_async_callable(processor):
            raise TypeError(
                f"processor must be an async function (async def f(msg)), got {processor!r}"
            )
        for name, count, low in (
            ("concurrency", concurrency, 1),
            ("retries", retries, 0),
            ("max_buffered", max_buffered, 1),
        ):
            if not isinstance(count, int) or isinstance(count, bool) or count < low:
                raise ValueError(f"{name} must be an int >= {low}, got {count!r}")
        if retry_backoff is None:
            retry_backoff = Backoff(initial=0.1, maximum=5.0, multiplier=2.0, jitter=0.2)
        if not isinstance(retry_backoff, Backoff):
            raise TypeError(f"retry_backoff must be a supervisors.Backoff, got {retry_backoff!r}")
        if dead_letter_topic is not None:
            if not isinstance(dead_letter_topic, str) or not dead_letter_topic:
                raise ValueError(
                    f"dead_letter_topic must be a non-empty str or None, got {dead_letter_topic!r}"
                )
            if dead_letter_topic in topics:
                raise ValueError(
                    f"dead_letter_topic {dead_letter_topic!r} is one of the consumed topics "
                    "(a poison message would loop forever)"
                )
        for name, seconds, optional in (
            ("processing_timeout", processing_timeout, True),
            ("commit_interval", commit_interval, False),
            ("revoke_timeout", revoke_timeout, False),
            ("connect_timeout", connect_timeout, False),
            ("probe_interval", probe_interval, False),
        ):
            if seconds is None and optional:
                continue
            if not isinstance(seconds, int | float) or not 0 < seconds < math.inf:
                raise ValueError(f"{name} must be a number of seconds > 0, got {seconds!r}")
        if options is None:
            options = ConsumerOptions()
        if not isinstance(options, ConsumerOptions):
            raise TypeError(f"options must be a ConsumerOptions, got {options!r}")
        self.topics = tuple(topics)
        self.group_id = group_id
        self.metrics = metrics
        self._processor = processor
        self._concurrency = concurrency
        self._retries = retries
        self._backoff = retry_backoff
        self._dead_letter_topic = dead_letter_topic
        self._processing_timeout = processing_timeout
        self._commit_interval = float(commit_interval)
        self._revoke_timeout = float(revoke_timeout)
        self._max_buffered = max_buffered
        self._options = options
        self._connect_timeout = float(connect_timeout)
        self._probe_interval = float(probe_interval)
        self._session: _Session | None = None
        self._sessions = 0
        self._processed = 0
        self._retried = 0
        self._dead_lettered = 0
        self._by_topic: dict[tuple[str, str], Any] = {}

    # -- the actor -------------------------------------------------------------------
    def spec(self, id: str, **spec_options: Any) -> ChildSpec:
        """The child running this consumer.

        ``spec_options`` go to :class:`supervisors.ChildSpec`; defaults here:
        ``stall_timeout=120`` (no progress while messages wait -> restart) and
        ``shutdown=10`` (the budget for the final commit and leaving the group).

        Example::

            children.append(consumer.spec("persister", depends_on=("bridge",)))
        """
        spec_options.setdefault("stall_timeout", 120.0)
        spec_options.setdefault("shutdown", 10.0)
        return ChildSpec(id, self._run, **spec_options)

    async def _run(
        self, *, task_status: trio.TaskStatus[Consumer] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        async with self._conn.serve(
            f"consumer {self.group_id}",
            connect_timeout=self._connect_timeout,
            probe_interval=self._probe_interval,
        ) as (backend, watch):
            group: GroupConsumer | None = None
            with trio.move_on_after(self._connect_timeout):
                group = await backend.open_consumer(self.group_id, self.topics, self._options)
            if group is None:
                raise MQUnavailable(
                    f"could not open a consumer of group {self.group_id!r} within "
                    f"{self._connect_timeout:g}s"
                )
            session = _Session(self, backend, group, watch)
            self._session = session
            self._sessions += 1
            # This actor owns the group membership (poll loop, dispatch, commits); the
            # processing runs in a child of its own ("workers"): killing that child
            # cancels the messages in flight (they go back to their queues) and costs
            # no group rejoin.
            workers = Supervisor(
                [ChildSpec(_WORKERS, session.run_workers, shutdown=1.0)],
                max_restarts=5,
                max_seconds=10.0,
                backoff=Backoff(initial=0.05, maximum=1.0, jitter=0.2),
                name=_WORKERS,
            )
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(session.dispatch)
                    nursery.start_soon(session.tick)
                    nursery.start_soon(watch.run, backend)
                    nursery.start_soon(group.run, session)
                    # the nested supervisor runs in this task: its child is ours
                    status = cast("trio.TaskStatus[Supervisor]", _Started(task_status, self))
                    await workers.run(task_status=status)
            finally:
                session.close()
                with cleanup_scope():
                    await session.commit(final=True)
                    try:
                        await group.aclose()
                    except (MQError, BridgeError) as exc:
                        _log.warning(
                            "mq consumer close failed", group=self.group_id, error=str(exc)
                        )
                    session.forget_lag()
                self._session = None
        raise AssertionError("unreachable")  # pragma: no cover

    def statistics(self) -> ConsumerStatistics:
        """Counters and the current session's state (a frozen record).

        Example::

            stats = consumer.statistics()
            print(stats.processed, stats.lag, stats.assigned)
        """
        session = self._session
        parts = session.parts if session is not None else {}
        return ConsumerStatistics(
            processed=self._processed,
            retries=self._retried,
            dead_lettered=self._dead_lettered,
            assigned=frozenset(parts),
            lag=sum(p.lag for p in parts.values()),
            buffered=session.buffered if session is not None else 0,
            in_flight=sum(p.in_flight for p in parts.values()),
            broker_reachable=session.watch.reachable if session is not None else False,
            running=session is not None,
            sessions=self._sessions,
        )

    def _metric(self, family: str, topic: str) -> Any:
        child = self._by_topic.get((family, topic))
        if child is None and self.metrics is not None:
            child = getattr(self.metrics, family).labels(topic=topic)
            self._by_topic[(family, topic)] = child
        return child

    def __repr__(self) -> str:
        state = "running" if self._session is not None else "stopped"
        return f"<Consumer group={self.group_id!r} topics={list(self.topics)} {state}>"


class _Session:
    """One incarnation: the GroupHandler the backend feeds, workers, commits."""

    def __init__(
        self, consumer: Consumer, backend: MQBackend, group: GroupConsumer, watch: BrokerWatch
    ) -> None:
        self.consumer = consumer
        self.backend = backend
        self.group = group
        self.watch = watch
        self.parts: dict[TopicPartition, _Partition] = {}
        self.min_epoch = 0
        self.buffered = 0
        self._send, self._receive = trio.open_memory_channel[Batch](_CHANNEL_BATCHES)
        self._ready: deque[_Partition] = deque()
        self._ready_lot = trio.lowlevel.ParkingLot()
        self._space_lot = trio.lowlevel.ParkingLot()
        self._space_waiting = False
        self._commit_lock = trio.Lock()
        self._lag_labels: set[TopicPartition] = set()
        # The consumer actor's handle: the workers child reports progress to it (the
        # stall watchdog is the actor's), None outside a supervised child.
        self._owner: ChildHandle | None
        try:
            self._owner = current_child()
        except RuntimeError:
            self._owner = None

    def progress(self) -> None:
        """Feed the consumer actor's stall watchdog (from any of its tasks or children)."""
        if self._owner is not None:
            self._owner.progress()
        else:
            progress()

    # -- GroupHandler (called from the backend's tasks) -------------------------------
    def deliver_nowait(self, batch: Batch) -> bool:
        try:
            self._send.send_nowait(batch)
        except trio.WouldBlock:
            return False
        return True

    async def deliver(self, batch: Batch) -> None:
        await self._send.send(batch)

    async def revoke(
        self, partitions: frozenset[TopicPartition], epoch: int
    ) -> dict[TopicPartition, int]:
        self.min_epoch = max(self.min_epoch, epoch)
        # The partitions stay in ``parts`` until their work is done and their offsets
        # taken: a stop meanwhile (the final commit) still commits what they finished.
        states = [p for p in (self.parts.get(tp) for tp in partitions) if p is not None]
        for part in states:
            part.revoked = True
            self.buffered -= len(part.queue)
            part.queue.clear()
        self._space_lot.unpark_all()
        busy = [p for p in states if p.busy]
        if busy:
            with trio.move_on_after(self.consumer._revoke_timeout):
                for part in busy:
                    await part.idle.wait()
            for part in busy:
                if part.scope is not None:
                    part.scope.cancel()
            with trio.move_on_after(self.consumer._revoke_timeout):
                for part in busy:
                    await part.idle.wait()
        offsets = {
            p.tp: p.position for p in states if p.position is not None and p.position != p.committed
        }
        for part in states:
            if self.parts.get(part.tp) is part:
                del self.parts[part.tp]
        self._forget_lag([p.tp for p in states])
        _log.info(
            "mq partitions revoked",
            group=self.consumer.group_id,
            partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions),
            committing={f"{tp.topic}[{tp.partition}]": off for tp, off in offsets.items()},
            cancelled=sum(1 for p in busy if p.busy),
        )
        return offsets

    # -- dispatch ------------------------------------------------------------------------
    def _part(self, tp: TopicPartition) -> _Partition:
        part = self.parts.get(tp)
        if part is None or part.revoked:  # a revoked partition given back: a new state
            part = self.parts[tp] = _Partition(tp)
        return part

    async def dispatch(self) -> None:
        limit = self.consumer._max_buffered
        async for batch in self._receive:
            if batch.epoch < self.min_epoch:
                continue  # polled before a rebalance: those partitions were handed back
            # Room for the whole batch (or an empty queue): max_buffered is a real bound.
            count = sum(len(records) for records in batch.records.values())
            while self.buffered and self.buffered + count > limit:
                self._space_waiting = True
                try:
                    await self._space_lot.park()
                finally:
                    self._space_waiting = False
            if batch.epoch < self.min_epoch:
                continue
            for tp, mark in batch.highwater.items():
                self._part(tp).highwater = mark
            for tp, records in batch.records.items():
                if not records:
                    continue
                part = self._part(tp)
                if part.fetched is not None and records[0].offset < part.fetched:
                    records = [r for r in records if r.offset >= part.fetched]
                    if not records:
                        continue
                if part.position is None:
                    part.position = records[0].offset
                part.fetched = records[-1].offset + 1
                part.queue.extend(records)
                self.buffered += len(records)
                if not part.busy and not part.scheduled:
                    part.scheduled = True
                    self._ready.append(part)
                    self._ready_lot.unpark()

    # -- workers ---------------------------------------------------------------------
    async def run_workers(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The ``workers`` child: ``concurrency`` workers over the partition queues. A new
        incarnation first schedules every partition with messages waiting (those the
        previous one was processing when it was killed went back to their queues)."""
        for part in self.parts.values():
            if part.queue and not (part.scheduled or part.busy or part.revoked):
                part.scheduled = True
                self._ready.append(part)
        async with trio.open_nursery() as nursery:
            for _ in range(self.consumer._concurrency):
                nursery.start_soon(self.work)
            task_status.started()
            self._ready_lot.unpark_all()

    async def work(self) -> NoReturn:
        while True:
            while not self._ready:
                await self._ready_lot.park()
            part = self._ready.popleft()
            part.scheduled = False
            if part.revoked or not part.queue:
                continue
            part.busy = True
            part.idle = trio.Event()
            try:
                await self._drain(part)
            finally:
                part.busy = False
                part.in_flight = False
                part.scope = None
                part.idle.set()
            if part.queue and not part.revoked:
                part.scheduled = True
                self._ready.append(part)
                self._ready_lot.unpark()
            # A schedule point per slice: a processor that never blocks must not starve
            # the fetcher (the bridge's asyncio loop runs between trio tasks).
            await trio.lowlevel.checkpoint()

    async def _drain(self, part: _Partition) -> None:
        """Process ``part``'s messages in order for about ``_SLICE`` seconds (the hot
        path: the first attempt is inline; retries and dead letters go to :meth:`_retry`).

        Per message: decode, bind its trace ID, run the processor, time it.
        Per slice: one cancel scope (for a revoke), the times observed in one pass
        (:func:`~gochat_actors.metrics.observe_many`), the consumed counter, progress.
        """
        consumer = self.consumer
        processor = consumer._processor
        timeout = consumer._processing_timeout
        group = consumer.group_id
        histogram = consumer._metric("mq_processing_duration", part.tp.topic)
        timings: list[float] | None = [] if histogram is not None else None
        decode = Message.from_record
        perf_counter = time.perf_counter
        queue = part.queue
        done = succeeded = 0
        unfinished: RawRecord | None = None  # taken from the queue, not finished yet
        try:
            with trio.CancelScope() as scope:
                part.scope = scope
                now = perf_counter()
                until = now + _SLICE
                while queue and not part.revoked and now < until:
                    record = unfinished = queue.popleft()
                    self.buffered -= 1
                    part.in_flight = True
                    try:
                        msg = decode(record)
                    except Exception as exc:
                        await self._dead_letter(record, None, exc, attempts=0)
                        now = perf_counter()
                    else:
                        error: Exception | None = None
                        token = process_started(msg, group)  # trace + span in logs (spans)
                        start = perf_counter()
                        try:
                            if timeout is None:
                                await processor(msg)
                            else:
                                with trio.fail_after(timeout):
                                    await processor(msg)
                        except Exception as exc:
                            error = exc
                        finally:
                            process_ended(token, error)
                        now = perf_counter()
                        if timings is not None:
                            timings.append(now - start)
                        if error is None:
                            succeeded += 1
                        else:
                            if await self._retry(record, msg, error, histogram):
                                succeeded += 1
                            now = perf_counter()
                    part.in_flight = False
                    part.position = record.offset + 1
                    unfinished = None
                    done += 1
        finally:
            if unfinished is not None and not part.revoked:
                # cancelled mid-message (the workers child was killed): it goes back to
                # the front of its queue, for the next incarnation
                queue.appendleft(unfinished)
                self.buffered += 1
            if done:
                consumer._processed += done
                self.progress()
                if self._space_waiting:
                    self._space_lot.unpark_all()
            if timings:
                observe_many(histogram, timings)
            if succeeded and histogram is not None:
                consumer._metric("mq_messages_consumed", part.tp.topic).inc(succeeded)

    async def _retry(
        self, record: RawRecord, msg: Message, error: Exception, histogram: Any
    ) -> bool:
        """Attempts 2..retries+1 of a failed message (backoff between), then the
        dead-letter topic. True if an attempt succeeded."""
        consumer = self.consumer
        timeout = consumer._processing_timeout
        attempts = 1
        while attempts <= consumer._retries:
            consumer._retried += 1
            counter = consumer._metric("mq_retries", msg.topic)
            if counter is not None:
                counter.inc()
            delay = consumer._backoff.delay(attempts - 1, random.random())
            _log.warning(
                "mq processing failed; retrying",
                group=consumer.group_id,
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                trace_id=msg.trace_id,
                attempt=attempts,
                retry_in=round(delay, 3),
                error=f"{type(error).__name__}: {error}",
            )
            await trio.sleep(delay)
            attempts += 1
            start = time.perf_counter()
            token = process_started(msg, consumer.group_id)
            failed: Exception | None = None
            try:
                if timeout is None:
                    await consumer._processor(msg)
                else:
                    with trio.fail_after(timeout):
                        await consumer._processor(msg)
            except Exception as exc:
                error = failed = exc
            else:
                return True
            finally:
                process_ended(token, failed)
                if histogram is not None:
                    histogram.observe(time.perf_counter() - start)
        await self._dead_letter(record, msg, error, attempts)
        return False

    # -- dead letters ------------------------------------------------------------------
    async def _dead_letter(
        self, record: RawRecord, msg: Message | None, exc: Exception, attempts: int
    ) -> None:
        consumer = self.consumer
        error = f"{exc}"[:_ERROR_TEXT_LIMIT]
        trace_id = msg.trace_id if msg is not None else None
        where = {
            "group": consumer.group_id,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "attempts": attempts,
            "error": f"{type(exc).__name__}: {error}",
        }
        topic = consumer._dead_letter_topic
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
                    [result] = await self.backend.send_batch([out])
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
                    delay = consumer._backoff.delay(min(failures, 30), random.random())
                    _log.error(
                        "mq dead-letter send failed; retrying",
                        dead_letter_topic=topic,
                        retry_in=round(delay, 3),
                        dlq_error=f"{type(send_error).__name__}: {send_error}",
                        **where,
                    )
                    self.watch.degrade(f"dead-letter topic {topic!r} unavailable")
                    await trio.sleep(delay)
            if failures:
                self.watch.degrade("")
            consumer._dead_lettered += 1
            counter = consumer._metric("mq_dead_lettered", record.topic)
            if counter is not None:
                counter.inc()
            _log.warning("mq message dead-lettered", dead_letter_topic=topic, **where)

    # -- commits, lag, progress -----------------------------------------------------------
    async def tick(self) -> NoReturn:
        """Every ``commit_interval``: commit, publish lag, and feed the stall watchdog
        while there is nothing to do (or the broker is unreachable: a restart won't help)."""
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(self.consumer._commit_interval)
                if not self._commit_lock.locked():  # a commit may hang on a hung broker
                    nursery.start_soon(self.commit)
                if not self.watch.reachable or self._idle():
                    self.progress()

    def _idle(self) -> bool:
        if self.buffered or self._receive.statistics().current_buffer_used:
            return False
        return all(p.lag == 0 for p in self.parts.values())

    async def commit(self, *, final: bool = False) -> None:
        """Commit every partition's position that moved since its last commit."""
        async with self._commit_lock:
            moved = [
                (p, p.position)
                for p in self.parts.values()
                if p.position is not None and p.position != p.committed
            ]
            if moved:
                offsets = {p.tp: pos for p, pos in moved}
                try:
                    await self.group.commit(offsets)
                except (MQError, BridgeError) as exc:
                    _log.warning(
                        "mq commit failed",
                        group=self.consumer.group_id,
                        final=final,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    return
                for part, pos in moved:
                    part.committed = pos
            self._publish_lag()

    def _publish_lag(self) -> None:
        metrics = self.consumer.metrics
        if metrics is None:
            return
        for tp, part in self.parts.items():
            if part.highwater is None:
                continue
            base = part.committed if part.committed is not None else part.position
            if base is None:
                base = part.highwater
            metrics.mq_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                max(0, part.highwater - base)
            )
            self._lag_labels.add(tp)

    def _forget_lag(self, tps: Sequence[TopicPartition]) -> None:
        metrics = self.consumer.metrics
        for tp in tps:
            if tp in self._lag_labels:
                self._lag_labels.discard(tp)
                if metrics is not None:
                    metrics.mq_lag.remove(tp.topic, str(tp.partition))

    def forget_lag(self) -> None:
        """Drop this session's lag series (the partitions are not ours any more)."""
        self._forget_lag(list(self._lag_labels))

    def close(self) -> None:
        """No more batches: the backend's deliver fails from now on."""
        self._receive.close()


def consumer_spec(
    id: str,
    *,
    topics: Sequence[str],
    group_id: str,
    processor: Processor,
    settings: MQSettings | None = None,
    bridge: Bridge | None = None,
    metrics: Metrics | None = None,
    broker: MemoryBroker | None = None,
    concurrency: int = 8,
    retries: int = 3,
    retry_backoff: Backoff | None = None,
    dead_letter_topic: str | None = None,
    processing_timeout: float | None = None,
    commit_interval: float = 1.0,
    revoke_timeout: float = 5.0,
    max_buffered: int = 5000,
    options: ConsumerOptions | None = None,
    connect_timeout: float = 10.0,
    probe_interval: float = 2.0,
    request_timeout: float = 10.0,
    **spec_options: Any,
) -> ChildSpec:
    """A child running a :class:`Consumer` of ``topics`` in ``group_id``.

    ``settings``/``bridge``/``metrics``/``broker`` say how to reach the broker (the
    same as the :class:`Producer`'s; ``settings=None`` is ``memory://``). Other keyword
    arguments are :class:`supervisors.ChildSpec` options (``depends_on``,
    ``stall_timeout``, ``shutdown``...).

    Example::

        service.add_child(consumer_spec(
            "persister", topics=["chat.messages"], group_id="persister", processor=persist,
            concurrency=8, retries=3, retry_backoff=Backoff(initial=0.2, maximum=5.0),
            dead_letter_topic="chat.messages.dlq",
            settings=settings.mq, bridge=bridge, metrics=metrics, depends_on=("bridge",)))
    """
    consumer = Consumer(
        topics=topics,
        group_id=group_id,
        processor=processor,
        settings=settings,
        bridge=bridge,
        metrics=metrics,
        broker=broker,
        concurrency=concurrency,
        retries=retries,
        retry_backoff=retry_backoff,
        dead_letter_topic=dead_letter_topic,
        processing_timeout=processing_timeout,
        commit_interval=commit_interval,
        revoke_timeout=revoke_timeout,
        max_buffered=max_buffered,
        options=options,
        connect_timeout=connect_timeout,
        probe_interval=probe_interval,
        request_timeout=request_timeout,
    )
    return consumer.spec(id, **spec_options)
