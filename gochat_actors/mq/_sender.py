"""The producer's engine: one incarnation's queue and flusher (:class:`Sender`). ``queue``
puts records in; the flusher sends whatever is queued as one batch (one bridge crossing per
batch, up to ``max_in_flight`` batches at once) and hands each caller its own result."""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import trio

from .._exceptions import BridgeError, MQError, MQTimeout, MQUnavailable
from ..log import get_logger
from ._message import TRACE_ID_HEADER
from ._protocol import MQBackend, OutgoingRecord, RecordMetadata

__all__ = ["Pending", "Results", "SendLimits", "Sender", "check_timeout", "fresh_error"]

_log = get_logger("gochat_actors.mq")


def check_timeout(timeout: object) -> float:
    """A call's own ``timeout=``, checked before anything is queued: a NaN deadline
    would reach the reaper every send shares (and stop it), a non-positive one would
    send the message and then report it timed out."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if not timeout > 0:  # NaN included
        raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
    return float(timeout)


@dataclass(frozen=True, slots=True)
class SendLimits:
    """How much one producer queues and sends at once (checked by ``Producer``)."""

    max_batch: int
    """Records in one batch (one bridge crossing)."""
    max_pending: int
    """Records queued, beyond which ``send`` waits (backpressure)."""
    max_in_flight: int
    """Batches sent at once."""


def fresh_error(err: Exception) -> Exception:
    """A copy of a batch-wide error for one caller (one exception object, one traceback)."""
    try:
        copy = type(err)(*err.args)
    except Exception:  # an exception class with an unusual __init__
        return err
    copy.__cause__ = err.__cause__
    return copy


def _log_send_failure(record: OutgoingRecord, error: Exception) -> None:
    trace_id = next((v for k, v in record.headers if k == TRACE_ID_HEADER), b"")
    _log.error(
        "mq send failed",
        topic=record.topic,
        trace_id=trace_id.decode("utf-8", "replace"),
        error=f"{type(error).__name__}: {error}",
    )


Results = list[RecordMetadata | Exception]
_topic_of = attrgetter("topic")


class Pending:
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
            self.finish([fresh_error(error) for _ in self.records])

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
        self.fifo: deque[Pending] = deque()
        self.heap: list[tuple[float, int, Pending]] = []
        self._seq = itertools.count()
        self._limit = 1024

    def add(self, pending: Pending) -> None:
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

    def pop_expired(self, now: float) -> list[Pending]:
        """Remove and return the unfinished sends whose deadline is ``now`` or before."""
        self.prune()
        expired: list[Pending] = []
        fifo, heap = self.fifo, self.heap
        while fifo and (fifo[0].done or fifo[0].deadline <= now):
            expired.append(fifo.popleft())
        while heap and (heap[0][2].done or heap[0][0] <= now):
            expired.append(heapq.heappop(heap)[2])
        return [p for p in expired if not p.done]

    def next_deadline(self) -> float:
        fifo, heap = self.fifo, self.heap
        return min(fifo[0].deadline if fifo else math.inf, heap[0][0] if heap else math.inf)


class Sender:
    """One incarnation's queue and flusher. The flusher runs shielded, so a stopping
    actor still sends what was queued (within its shutdown budget). Send timeouts are
    enforced by one reaper task over the waiting sends' deadlines, not a cancel scope
    per send."""

    def __init__(
        self,
        limits: SendLimits,
        backend: MQBackend,
        count_produced: Callable[[Mapping[str, int]], None],
    ) -> None:
        self.backend = backend
        self._limits = limits
        self._count_produced = count_produced
        self._queue: deque[Pending] = deque()
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

    def enqueue(self, records: list[OutgoingRecord], deadline: float) -> Pending | None:
        """Queue ``records`` (at most ``max_batch``) if there is room now; the caller then
        waits on the returned entry. None: no room, or stopping (use :meth:`send`)."""
        queued = self._queued
        if self._closed or (queued and queued + len(records) > self._limits.max_pending):
            return None
        pending = Pending(records, deadline)
        self._queue.append(pending)
        self._queued = queued + len(records)
        self._deadlines.add(pending)
        if deadline < self._reaper_at:
            self._reaper_wakeup.set()
        self._work.set()
        return pending

    async def queue(self, records: list[OutgoingRecord], deadline: float) -> Pending | None:
        """Queue ``records`` (at most ``max_batch``), waiting for room up to ``deadline``.
        None: this incarnation is stopping (queue them on the next one)."""
        pending = self.enqueue(records, deadline)
        if pending is None:
            limit = self._limits.max_pending
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

    def _take(self) -> list[Pending]:
        """Queued entries up to ``max_batch`` records (always at least one entry)."""
        limit = self._limits.max_batch
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
        max_in_flight = self._limits.max_in_flight
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
                        while self._in_flight >= max_in_flight:
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

    async def _flush(self, batch: list[Pending]) -> None:
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
            self._count_produced(counts)
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
