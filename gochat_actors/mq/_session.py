"""One incarnation of a consumer (a :class:`Session`): the GroupHandler the backend feeds,
the dispatcher, ``concurrency`` workers over the partition queues, retries, commits::

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
import random
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, NoReturn

import trio

from supervisors import ChildHandle, current_child, progress

from .._exceptions import BridgeError, MQError
from .._tracing import (
    batch_ended,
    batch_started,
    message_binding,
    process_ended,
    process_started,
)
from ..log import get_logger
from ..metrics import observe_many
from ._connect import BrokerWatch
from ._consumer_config import ConsumerConfig, ConsumerTally, Processor
from ._dead_letter import dead_letter
from ._message import Message
from ._protocol import Batch, GroupConsumer, MQBackend, RawRecord, TopicPartition

__all__ = ["Partition", "Session"]

_log = get_logger("gochat_actors.mq")

_CHANNEL_BATCHES = 1  # a polled batch waiting for the dispatcher (see Session.caught_up)
_SLICE = 0.002  # seconds a worker processes one partition before others (and I/O) run


async def _within(timeout: float, processor: Processor, msg: Message) -> None:
    """``await processor(msg)`` that fails (``trio.TooSlowError``) after ``timeout``."""
    with trio.fail_after(timeout):
        await processor(msg)


class Partition:
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


class Session:
    """One incarnation: the GroupHandler the backend feeds, workers, commits."""

    def __init__(
        self,
        config: ConsumerConfig,
        tally: ConsumerTally,
        backend: MQBackend,
        group: GroupConsumer,
        watch: BrokerWatch,
    ) -> None:
        self.config = config
        self.tally = tally
        self.backend = backend
        self.group = group
        self.watch = watch
        self.parts: dict[TopicPartition, Partition] = {}
        self.min_epoch = 0
        self.buffered = 0  # fetched and waiting in the partition queues
        # Taken by a batch worker and not finished: still counted against max_buffered
        # (a batch of max_batch messages is not "concurrency" messages in flight).
        self.taken = 0
        self._send, self._receive = trio.open_memory_channel[Batch](_CHANNEL_BATCHES)
        self._ready: deque[Partition] = deque()
        self._ready_lot = trio.lowlevel.ParkingLot()
        self._space_lot = trio.lowlevel.ParkingLot()
        self._space_waiting = False
        # The poll loop waits here until the trio side took the last batch up (see
        # :meth:`caught_up`); woken when a batch is dispatched or a partition taken.
        self._uptake_lot = trio.lowlevel.ParkingLot()
        self._queued = 0  # batches in the channel, not yet taken by the dispatcher
        # Workers between their last slice and their next partition: parked on the
        # ready lot, or woken and not yet run (``unpark`` takes them off the lot at once,
        # so the lot's length alone misses a woken worker that did not take its partition).
        self._idle_workers = 0
        self._closed = False
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
    def caught_up(self) -> bool:
        """Whether the trio side took up what it was given: no polled batch waits for the
        dispatcher (in the channel, or held for room), and no partition with messages
        waits for an idle worker.

        The next poll waits for this (:meth:`deliver`). A poll parses its records into
        new objects; parsed while the previous records are still held, those objects
        are all fresh allocations and the garbage collector's young generation fills
        with them (a full queue of parsed records is what made the consumer run ten
        times the collections of a plain aiokafka loop). Parsed after the workers took
        and processed the previous batch, they reuse the memory the processed records
        gave back. Workers busy elsewhere (a processor awaiting I/O) do not hold the
        poll back: only work an idle worker could take does.
        """
        if self._closed:
            return True
        if self._queued or self._space_waiting:
            return False
        return not self._ready or not self._idle_workers

    def deliver_nowait(self, batch: Batch) -> bool:
        if not self.caught_up():
            return False
        try:
            self._send.send_nowait(batch)
        except trio.WouldBlock:
            return False
        self._queued += 1
        return True

    async def deliver(self, batch: Batch) -> None:
        while not self.caught_up():
            await self._uptake_lot.park()
        await self._send.send(batch)
        self._queued += 1

    def _taken_up(self) -> None:
        if self._uptake_lot and self.caught_up():
            self._uptake_lot.unpark_all()

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
            with trio.move_on_after(self.config.revoke_timeout):
                for part in busy:
                    await part.idle.wait()
            for part in busy:
                if part.scope is not None:
                    part.scope.cancel()
            with trio.move_on_after(self.config.revoke_timeout):
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
            group=self.config.group_id,
            partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions),
            committing={f"{tp.topic}[{tp.partition}]": off for tp, off in offsets.items()},
            cancelled=sum(1 for p in busy if p.busy),
        )
        return offsets

    # -- dispatch ------------------------------------------------------------------------
    def _part(self, tp: TopicPartition) -> Partition:
        part = self.parts.get(tp)
        if part is None or part.revoked:  # a revoked partition given back: a new state
            part = self.parts[tp] = Partition(tp)
        return part

    async def dispatch(self) -> None:
        limit = self.config.max_buffered
        async for batch in self._receive:
            self._queued -= 1
            try:
                await self._dispatch_batch(batch, limit)
            finally:
                self._taken_up()
            del batch  # the records are the queues' now: freed as they are processed

    async def _dispatch_batch(self, batch: Batch, limit: int) -> None:
        if batch.epoch < self.min_epoch:
            return  # polled before a rebalance: those partitions were handed back
        # Room for the whole batch (or nothing unfinished): max_buffered is a real
        # bound on the queues plus the batches in flight.
        count = sum(len(records) for records in batch.records.values())
        while (held := self.buffered + self.taken) and held + count > limit:
            self._space_waiting = True
            try:
                await self._space_lot.park()
            finally:
                self._space_waiting = False
        if batch.epoch < self.min_epoch:
            return
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
            for _ in range(self.config.concurrency):
                nursery.start_soon(self.work)
            task_status.started()
            self._ready_lot.unpark_all()

    async def work(self) -> NoReturn:
        while True:
            self._idle_workers += 1
            try:
                while not self._ready:
                    await self._ready_lot.park()
                part = self._ready.popleft()
            finally:
                self._idle_workers -= 1  # took a partition, or killed while idle
                if self._uptake_lot:
                    self._taken_up()  # the poll waits for this; it runs after this slice
            part.scheduled = False
            if part.revoked or not part.queue:
                continue
            part.busy = True
            part.idle = trio.Event()
            try:
                if self.config.batch_processor is None:
                    await self._drain(part)
                else:
                    await self._drain_batch(part)
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

    async def _drain(self, part: Partition) -> None:
        """Process ``part``'s messages in order for about ``_SLICE`` seconds (the hot
        path: the first attempt is inline; retries and dead letters go to :meth:`_retry`).

        Per message: decode, bind its trace and span IDs, run the processor, read the
        clock once (a message's time runs from the previous one's end: its decode and
        binding count in it). Per slice: one cancel scope (for a revoke), the trace and
        span IDs reset once (spans off: :class:`~gochat_actors._tracing.MessageBinding`),
        the times observed in one pass (:func:`~gochat_actors.metrics.observe_many`),
        the consumed counter and progress updated once. Before a retry or a dead letter
        the IDs are reset, as at the end of a slice.
        """
        config, tally = self.config, self.tally
        processor = config.processor
        timeout = config.processing_timeout
        if timeout is not None:
            processor = functools.partial(_within, timeout, processor)
        group = config.group_id
        histogram = tally.metric("mq_processing_duration", part.tp.topic)
        timings: list[float] | None = [] if histogram is not None else None
        decode = Message.from_record
        perf_counter = time.perf_counter
        binding = message_binding()  # None with spans on: process_started per message
        bind = binding.bind if binding is not None else None
        queue = part.queue
        done = missed = 0  # missed: dead-lettered (not counted as consumed)
        unfinished: RawRecord | None = None  # taken from the queue, not finished yet
        try:
            with trio.CancelScope() as scope:
                part.scope = scope
                now = perf_counter()
                until = now + _SLICE
                while queue and not part.revoked and now < until:
                    record = unfinished = queue.popleft()
                    self.buffered -= 1
                    part.in_flight = True  # until the work() that called this ends
                    try:
                        msg = decode(record)
                    except Exception as exc:
                        if binding is not None:
                            binding.unbind()
                        await self._dead_letter(record, None, exc, 0)
                        missed += 1
                        now = perf_counter()
                    else:
                        error: Exception | None = None
                        if bind is not None:
                            bind(msg.trace_id)  # trace + span in logs
                            try:
                                await processor(msg)
                            except Exception as exc:
                                error = exc
                        else:
                            token = process_started(msg, group)  # its process span
                            try:
                                await processor(msg)
                            except Exception as exc:
                                error = exc
                            finally:
                                process_ended(token, error)
                        end = perf_counter()
                        if timings is not None:
                            timings.append(end - now)
                        now = end
                        if error is not None:
                            if binding is not None:
                                binding.unbind()
                            if not await self._retry(record, msg, error, histogram):
                                missed += 1
                            now = perf_counter()
                    part.position = record.offset + 1
                    unfinished = None
                    done += 1
        finally:
            if binding is not None:
                binding.unbind()
            if unfinished is not None and not part.revoked:
                # cancelled mid-message (the workers child was killed): it goes back to
                # the front of its queue, for the next incarnation
                queue.appendleft(unfinished)
                self.buffered += 1
            if done:
                tally.processed += done
                self.progress()
                if self._space_waiting:
                    self._space_lot.unpark_all()
            if timings:
                observe_many(histogram, timings)
            if done > missed and histogram is not None:
                tally.metric("mq_messages_consumed", part.tp.topic).inc(done - missed)

    async def _drain_batch(self, part: Partition) -> None:
        """Give up to ``max_batch`` of ``part``'s queued messages, in order, to the batch
        processor (:meth:`_settle`); a record that does not decode is dead-lettered
        between the runs around it. On exit (a cancel: the workers were killed) what was
        taken and not finished goes back to the front of the queue: the position, and so
        the commit, never passes a message that was not processed."""
        tally, queue = self.tally, part.queue
        taken: list[RawRecord] = []
        for _ in range(min(len(queue), self.config.max_batch)):
            taken.append(queue.popleft())
        # Taken, not finished: the messages stay counted against max_buffered until
        # their run finishes (:meth:`_finished` gives the room back, run by run).
        self.buffered -= len(taken)
        self.taken += len(taken)
        counts = [0, 0]  # finished, succeeded
        histogram = tally.metric("mq_processing_duration", part.tp.topic)
        try:
            with trio.CancelScope() as scope:
                part.scope = scope
                part.in_flight = True
                run: list[tuple[RawRecord, Message]] = []
                for record in taken:
                    try:
                        msg = Message.from_record(record)
                    except Exception as exc:
                        if run:
                            await self._settle(part, run, counts, histogram)
                            run = []
                        await self._dead_letter(record, None, exc, 0)
                        self._finished(part, record, 1, counts)
                        continue
                    run.append((record, msg))
                if run:
                    await self._settle(part, run, counts, histogram)
        finally:
            done, succeeded = counts
            unfinished = len(taken) - done
            self.taken -= unfinished
            if unfinished and not part.revoked:
                # cancelled mid-batch: the unfinished rest goes back, in order
                queue.extendleft(reversed(taken[done:]))
                self.buffered += unfinished
            elif unfinished and self._space_waiting:
                self._space_lot.unpark_all()  # revoked: the rest is dropped, room made
            if succeeded and histogram is not None:
                tally.metric("mq_messages_consumed", part.tp.topic).inc(succeeded)

    async def _settle(
        self,
        part: Partition,
        run: list[tuple[RawRecord, Message]],
        counts: list[int],
        histogram: Any,
    ) -> None:
        """One call of the batch processor on ``run``; if it raises, bisect: each half is
        settled in turn, so the messages before a culprit are processed (once) before it,
        and a culprit alone gets the per-message retries and dead letter (:meth:`_retry`)."""
        config = self.config
        process = config.batch_processor
        assert process is not None, "a batch consumer has a batch processor"
        msgs = [msg for _, msg in run]
        error: Exception | None = None
        token = batch_started(msgs, config.group_id)
        start = time.perf_counter()
        try:
            if config.processing_timeout is None:
                await process(msgs)
            else:
                with trio.fail_after(config.processing_timeout):
                    await process(msgs)
        except Exception as exc:
            error = exc
        finally:
            batch_ended(token, error)
            if histogram is not None:
                histogram.observe(time.perf_counter() - start)
        if error is None:
            counts[1] += len(run)
        elif len(run) == 1:
            record, msg = run[0]
            if await self._retry(record, msg, error, histogram):
                counts[1] += 1
        else:
            # A failed call that halves the search is progress too: with the culprit at
            # the head, log2(n) calls fail before anything finishes, and a stall restart
            # then would start the same bisection again, forever.
            self.progress()
            half = len(run) // 2
            await self._settle(part, run[:half], counts, histogram)
            await self._settle(part, run[half:], counts, histogram)
            return
        self._finished(part, run[-1][0], len(run), counts)

    def _finished(self, part: Partition, last: RawRecord, count: int, counts: list[int]) -> None:
        """``count`` messages up to ``last`` finished: the position moves past them, and
        the stall watchdog hears of it (a batch may take long: each run counts)."""
        part.position = last.offset + 1
        counts[0] += count
        self.taken -= count
        self.tally.processed += count
        self.progress()
        if self._space_waiting:
            # the room is made now: the dispatcher moves the next batch in while the
            # rest of this one (a bisection) or the other partitions' batches run
            self._space_lot.unpark_all()

    async def _retry(
        self, record: RawRecord, msg: Message, error: Exception, histogram: Any
    ) -> bool:
        """Attempts 2..retries+1 of a failed message (backoff between), then the
        dead-letter topic. True if an attempt succeeded."""
        config, tally = self.config, self.tally
        timeout = config.processing_timeout
        attempts = 1
        while attempts <= config.retries:
            tally.retried += 1
            counter = tally.metric("mq_retries", msg.topic)
            if counter is not None:
                counter.inc()
            delay = config.retry_backoff.delay(attempts - 1, random.random())
            _log.warning(
                "mq processing failed; retrying",
                group=config.group_id,
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
            token = process_started(msg, config.group_id)
            failed: Exception | None = None
            try:
                if timeout is None:
                    await config.processor(msg)
                else:
                    with trio.fail_after(timeout):
                        await config.processor(msg)
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

    # -- commits, lag, progress -----------------------------------------------------------
    async def tick(self) -> NoReturn:
        """Every ``commit_interval``: commit, publish lag, and feed the stall watchdog
        while there is nothing to do (or the broker is unreachable: a restart won't help)."""
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(self.config.commit_interval)
                if not self._commit_lock.locked():  # a commit may hang on a hung broker
                    nursery.start_soon(self.commit)
                if not self.watch.reachable or self._idle():
                    self.progress()

    def _idle(self) -> bool:
        if self.buffered or self.taken or self._receive.statistics().current_buffer_used:
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
                        group=self.config.group_id,
                        final=final,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    return
                for part, pos in moved:
                    part.committed = pos
            self._publish_lag()

    def _publish_lag(self) -> None:
        metrics = self.tally.metrics
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
        metrics = self.tally.metrics
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
        self._closed = True
        self._receive.close()
        self._uptake_lot.unpark_all()

    async def _dead_letter(
        self, record: RawRecord, msg: Message | None, exc: Exception, attempts: int
    ) -> None:
        await dead_letter(
            record,
            msg,
            exc,
            attempts,
            config=self.config,
            tally=self.tally,
            backend=self.backend,
            watch=self.watch,
        )
