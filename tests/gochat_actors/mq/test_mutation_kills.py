"""Tests that kill the mutants of the consumer's commit path (``gochat_actors/mq/_session.py``)
that the mutation run (``make mutants MODULE=gochat_actors/mq/consumer``) left alive. Each
test's docstring names the mutants it kills (``Session.commit`` 3 is
``gochat_actors.mq._session.xǁSessionǁcommit__mutmut_3``); see docs/mutants.md.

The session is driven directly (its dispatcher and workers in a nursery, batches handed
to :meth:`Session.deliver`, a group that records its commits), under ``autojump_clock``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
import trio
import trio.testing
from aiokafka.structs import ConsumerRecord
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from gochat_actors._exceptions import MQError
from gochat_actors.metrics import Metrics
from gochat_actors.mq import Message, TopicPartition
from gochat_actors.mq._consumer import _one_at_a_time
from gochat_actors.mq._consumer_config import ConsumerConfig, ConsumerTally
from gochat_actors.mq._protocol import Batch
from gochat_actors.mq._session import Session
from supervisors import Backoff

TP0 = TopicPartition("chat", 0)
TP1 = TopicPartition("chat", 1)
TP2 = TopicPartition("chat", 2)


BAD_HEADERS = ((b"not a str", b"x"),)  # Message.from_record: TypeError


def records(tp: TopicPartition, offsets: range, bad: Sequence[int] = ()) -> list[Any]:
    """Records at ``offsets``; those in ``bad`` do not decode (a header name in bytes)."""
    return [
        ConsumerRecord(
            tp.topic,
            tp.partition,
            o,
            0,
            0,
            None,
            b"v",
            None,
            -1,
            1,
            BAD_HEADERS if o in bad else (),
        )
        for o in offsets
    ]


def batch(epoch: int = 0, bad: Sequence[int] = (), **by_partition: range) -> Batch:
    """``batch(p0=range(3), p1=range(2))``: records of chat[0] and chat[1]."""
    tps = {"p0": TP0, "p1": TP1, "p2": TP2}
    recs = {tps[k]: records(tps[k], r, bad) for k, r in by_partition.items()}
    return Batch(epoch, recs, {tps[k]: r.stop for k, r in by_partition.items()})


class Group:
    """A group member that records each commit (and fails them while ``failing``)."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.failing = False

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        await trio.lowlevel.checkpoint()
        if self.failing:
            raise MQError("the broker is down")
        self.commits.append(dict(offsets))


class Watch:
    reachable = True


async def nothing(msg: Message) -> None:
    pass


def make_session(
    processor: Callable[[Message], Awaitable[None]] = nothing,
    *,
    group: Group | None = None,
    batch_processor: Callable[[list[Message]], Awaitable[None]] | None = None,
    metrics: Metrics | None = None,
    **config: Any,
) -> Session:
    if batch_processor is not None:
        processor = _one_at_a_time(batch_processor)  # as Consumer does
    settings: dict[str, Any] = {
        "group_id": "g",
        "processor": processor,
        "concurrency": 1,
        "retries": 0,
        "retry_backoff": Backoff(initial=1.0, maximum=1.0, jitter=0.0),
        "dead_letter_topic": None,
        "processing_timeout": None,
        "commit_interval": 1.0,
        "revoke_timeout": 1.0,
        "max_buffered": 1000,
        "batch_processor": batch_processor,
        **config,
    }
    return Session(
        ConsumerConfig(**settings),
        ConsumerTally(metrics),
        None,  # type: ignore[arg-type]  # no backend: no dead letters here
        group or Group(),  # type: ignore[arg-type]
        Watch(),  # type: ignore[arg-type]
    )


@asynccontextmanager
async def running(session: Session) -> AsyncIterator[trio.Nursery]:
    """The session's dispatcher and workers (no commit tick: the tests commit)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.dispatch)
        await nursery.start(session.run_workers)
        yield nursery
        nursery.cancel_scope.cancel()


async def deliver_all(session: Session, batches: Sequence[Batch], finished: int = 0) -> None:
    """Deliver, then wait for ``finished`` messages processed or skipped (a retry's
    backoff is a sleep: all tasks blocked is not the end), then for all tasks blocked."""
    for one in batches:
        await session.deliver(one)
    with trio.fail_after(60):
        while session.tally.processed < finished:  # noqa: ASYNC110 (virtual time)
            await trio.sleep(0.01)
    await trio.testing.wait_all_tasks_blocked()


async def test_a_revoke_commits_the_revoked_partitions_that_moved_and_only_those(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A revoke hands back the positions of the revoked partitions that moved since
    their last commit; one whose position is committed already is not committed again.
    Kills ``Session.revoke`` 18, 19, 20."""
    group = Group()
    session = make_session(group=group)
    async with running(session):
        await deliver_all(session, [batch(p0=range(5), p1=range(3))])
        await session.commit()
        assert group.commits == [{TP0: 5, TP1: 3}]
        await deliver_all(session, [batch(p0=range(5, 7))])
        offsets = await session.revoke(frozenset({TP0, TP1}), epoch=1)
    assert offsets == {TP0: 7}
    assert session.parts == {}


async def test_a_revoke_logs_what_it_commits_and_what_it_could_not_cancel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The revoke's log entry: the group, the revoked partitions (sorted), the offsets
    handed back for the commit and the partitions still busy after their cancel (a
    processor that shields itself past both revoke timeouts). Kills ``Session.revoke``
    24-35 and 38."""
    release = trio.Event()

    async def process(msg: Message) -> None:
        if msg.partition == 1:
            with trio.CancelScope(shield=True):
                await release.wait()

    session = make_session(process, concurrency=2)
    async with running(session):
        await deliver_all(session, [batch(p0=range(4), p1=range(2))])
        with structlog.testing.capture_logs() as logs:
            offsets = await session.revoke(frozenset({TP1, TP0}), epoch=1)
        release.set()
    assert offsets == {TP0: 4, TP1: 0}, "chat[1]: its first message never finished"
    (entry,) = [e for e in logs if e["event"] == "mq partitions revoked"]
    assert entry == {
        "event": "mq partitions revoked",
        "log_level": "info",
        "group": "g",
        "partitions": ["chat[0]", "chat[1]"],
        "committing": {"chat[0]": 4, "chat[1]": 0},
        "cancelled": 1,
    }


def duration(metrics: Metrics, suffix: str) -> float:
    """``_count`` or ``_sum`` of chat's ``mq_processing_duration`` histogram."""
    value = metrics.registry.get_sample_value(
        f"gochat_mq_processing_seconds{suffix}", {"topic": "chat"}
    )
    assert value is not None
    return value


async def test_a_batch_with_a_record_that_does_not_decode(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A record that does not decode is dead-lettered (logged and skipped here: no
    dead-letter topic, failed 0 times, its decode error) between the runs around it; the
    rest of what the worker took goes on in the same drain (the next drain takes the next
    ``max_batch``), each run's duration observed under its topic. Kills
    ``Session._drain_batch`` 18, 32, 37, 39, 40, 45, 55, 60 and ``Session._settle`` 25."""
    calls: list[list[int]] = []

    async def process(msgs: list[Message]) -> None:
        calls.append([m.offset for m in msgs])

    metrics = Metrics()
    group = Group()
    session = make_session(batch_processor=process, group=group, max_batch=4, metrics=metrics)
    with structlog.testing.capture_logs() as logs:
        async with running(session):
            await deliver_all(session, [batch(p0=range(6), bad=[1])])
            await session.commit()
    assert calls == [[0], [2, 3], [4, 5]]
    assert group.commits == [{TP0: 6}]
    (skipped,) = [e for e in logs if e["event"].startswith("mq message skipped")]
    assert skipped["offset"] == 1
    assert skipped["attempts"] == 0
    assert skipped["error"] == "TypeError: header name b'not a str' is not a str"
    assert duration(metrics, "_count") == 3
    assert duration(metrics, "_sum") < 60


async def test_a_batch_culprit_retried_then_dead_lettered_with_its_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A batch that fails is bisected down to its culprit, which gets the per-message
    retries (each attempt's duration observed too) and is then skipped with the error
    that failed it. Kills ``Session._settle`` 36, 37, 52, 60."""
    calls: list[list[int]] = []

    async def process(msgs: list[Message]) -> None:
        calls.append([m.offset for m in msgs])
        if any(m.offset == 1 for m in msgs):
            raise ValueError("poison")

    metrics = Metrics()
    group = Group()
    session = make_session(batch_processor=process, group=group, retries=1, metrics=metrics)
    with structlog.testing.capture_logs() as logs:
        async with running(session):
            await deliver_all(session, [batch(p0=range(3))], finished=3)
            await session.commit()
    assert calls == [[0, 1, 2], [0], [1, 2], [1], [1], [2]]
    assert group.commits == [{TP0: 3}]
    (retrying,) = [e for e in logs if e["event"] == "mq processing failed; retrying"]
    assert (retrying["offset"], retrying["error"]) == (1, "ValueError: poison")
    (skipped,) = [e for e in logs if e["event"].startswith("mq message skipped")]
    assert (skipped["offset"], skipped["attempts"]) == (1, 2)
    assert skipped["error"] == "ValueError: poison"
    assert duration(metrics, "_count") == 6, "five calls of the batch processor, one retry"


async def test_killed_workers_give_a_batch_back_and_its_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The workers killed mid-batch: the batch goes back to the front of its queue,
    counted as buffered again and no longer as taken; the next workers process it and
    the commit covers it. Kills ``Session._drain_batch`` 69."""
    calls: list[list[int]] = []
    gate = trio.Event()

    async def process(msgs: list[Message]) -> None:
        calls.append([m.offset for m in msgs])
        await gate.wait()

    group = Group()
    session = make_session(batch_processor=process, group=group)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.dispatch)
        async with trio.open_nursery() as workers:
            await workers.start(session.run_workers)
            await session.deliver(batch(p0=range(3)))
            await trio.testing.wait_all_tasks_blocked()
            workers.cancel_scope.cancel()
        assert calls == [[0, 1, 2]]
        assert (session.taken, session.buffered) == (0, 3)
        assert [r.offset for r in session.parts[TP0].queue] == [0, 1, 2]
        gate.set()
        await nursery.start(session.run_workers)
        await trio.testing.wait_all_tasks_blocked()
        assert (session.taken, session.buffered) == (0, 0)
        await session.commit()
        nursery.cancel_scope.cancel()
    assert calls == [[0, 1, 2], [0, 1, 2]]
    assert group.commits == [{TP0: 3}]


async def test_a_revoke_cancels_a_batch_in_progress_and_drops_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A revoke waits ``revoke_timeout`` for a busy batch partition, then cancels the
    batch processor: the batch is dropped (the partition is not ours any more), its
    messages no longer counted as buffered or taken, and nothing of it is committed.
    Kills ``Session._drain_batch`` 23, 70."""
    cancelled: list[float] = []

    async def process(msgs: list[Message]) -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(trio.current_time())
            raise

    session = make_session(batch_processor=process, revoke_timeout=1.0)
    async with running(session):
        await deliver_all(session, [batch(p0=range(3))])
        start = trio.current_time()
        offsets = await session.revoke(frozenset({TP0}), epoch=1)
        assert cancelled == [start + 1.0], "cancelled after one revoke_timeout"
        assert trio.current_time() == start + 1.0
        assert (session.taken, session.buffered) == (0, 0)
    assert offsets == {TP0: 0}, "the first message never finished"


def consumed(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "gochat_mq_messages_consumed_total", {"topic": "chat"}
    )
    return value or 0.0


async def test_a_commit_sends_what_moved_once_and_a_failed_commit_is_logged_and_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A commit sends the positions that moved since the last successful commit, and
    nothing when none did; a failed commit is logged (periodic or final) and what it
    carried is sent again by the next. Kills ``Session.commit`` 1, 3, 8-19."""
    group = Group()
    session = make_session(group=group)
    async with running(session):
        await deliver_all(session, [batch(p0=range(3), p1=range(2))])
        await session.commit()
        await session.commit()  # nothing moved
        assert group.commits == [{TP0: 3, TP1: 2}]
        await deliver_all(session, [batch(p0=range(3, 5))])
        group.failing = True
        with structlog.testing.capture_logs() as logs:
            await session.commit()
            await session.commit(final=True)
        group.failing = False
        await session.commit()
    assert group.commits == [{TP0: 3, TP1: 2}, {TP0: 5}]
    failed = {"event": "mq commit failed", "log_level": "warning", "group": "g"}
    error = "MQError: the broker is down"
    assert logs == [
        {**failed, "final": False, "error": error},
        {**failed, "final": True, "error": error},
    ]


async def test_a_revoke_cancels_a_message_in_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A revoke waits ``revoke_timeout`` for a busy partition, then cancels its
    processor; the message is not committed. Kills ``Session._drain`` 35."""
    cancelled: list[float] = []

    async def process(msg: Message) -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(trio.current_time())
            raise

    session = make_session(process, revoke_timeout=1.0)
    async with running(session):
        await deliver_all(session, [batch(p0=range(3))])
        start = trio.current_time()
        offsets = await session.revoke(frozenset({TP0}), epoch=1)
        assert cancelled == [start + 1.0]
        assert trio.current_time() == start + 1.0
        assert session.buffered == 0
    assert offsets == {TP0: 0}


async def test_messages_that_fail_are_skipped_with_their_error_and_not_counted_consumed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two records that do not decode and two messages that fail (no retries) among
    good ones: all are passed (the commit covers them), the failures logged with their
    error, only the two good ones counted consumed, and each processed message's time
    observed. Kills ``Session._drain`` 60, 61, 62, 63, 83, 90, 96."""
    seen: list[int] = []

    async def process(msg: Message) -> None:
        seen.append(msg.offset)
        if msg.offset in (3, 4):
            raise ValueError(f"poison {msg.offset}")

    metrics = Metrics()
    group = Group()
    session = make_session(process, group=group, metrics=metrics)
    with structlog.testing.capture_logs() as logs:
        async with running(session):
            await deliver_all(session, [batch(p0=range(6), bad=[1, 2])])
            await session.commit()
    assert seen == [0, 3, 4, 5]
    assert group.commits == [{TP0: 6}]
    skipped = [
        (e["offset"], e["attempts"], e["error"])
        for e in logs
        if e["event"].startswith("mq message skipped")
    ]
    assert skipped == [
        (1, 0, "TypeError: header name b'not a str' is not a str"),
        (2, 0, "TypeError: header name b'not a str' is not a str"),
        (3, 1, "ValueError: poison 3"),
        (4, 1, "ValueError: poison 4"),
    ]
    assert consumed(metrics) == 2
    assert duration(metrics, "_count") == 4
    assert duration(metrics, "_sum") < 60


async def test_each_retry_attempt_is_timed(autojump_clock: trio.testing.MockClock) -> None:
    """The processing-time histogram counts each attempt, retries too. Kills
    ``Session._drain`` 91."""
    failures = {1: 1}

    async def process(msg: Message) -> None:
        if failures.get(msg.offset):
            failures[msg.offset] -= 1
            raise ValueError("once")

    metrics = Metrics()
    session = make_session(process, retries=1, metrics=metrics)
    async with running(session):
        await deliver_all(session, [batch(p0=range(3))], finished=3)
    assert duration(metrics, "_count") == 4
    assert consumed(metrics) == 3


async def test_a_batch_culprit_that_succeeds_on_retry_counts_as_consumed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A batch's culprit that succeeds on its retry counts as consumed, with the rest.
    Kills ``Session._settle`` 42, 43, 45."""
    calls: list[list[int]] = []
    failures = [3]

    async def process(msgs: list[Message]) -> None:
        calls.append([m.offset for m in msgs])
        if failures[0] and any(m.offset == 1 for m in msgs):
            failures[0] -= 1
            raise ValueError("not yet")

    metrics = Metrics()
    group = Group()
    session = make_session(batch_processor=process, group=group, retries=1, metrics=metrics)
    async with running(session):
        await deliver_all(session, [batch(p0=range(3))], finished=3)
        await session.commit()
    assert calls == [[0, 1, 2], [0], [1, 2], [1], [1], [2]]
    assert group.commits == [{TP0: 3}]
    assert consumed(metrics) == 3


def process_spans(spans: InMemorySpanExporter) -> list[tuple[str, object, StatusCode]]:
    return [
        (s.name, (s.attributes or {}).get("messaging.consumer.group.name"), s.status.status_code)
        for s in spans.get_finished_spans()
        if s.name == "process chat"
    ]


async def test_with_spans_on_each_message_has_its_process_span(
    spans: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    """Spans on (the per-message path of the drain): each decoded message gets a
    ``process chat`` span of the group, an error status when it failed; a record that
    does not decode is skipped, the failed message too, and the commit covers all.
    Kills ``Session._drain`` 12, 29, 30, 51, 65, 69-79, 86, 107."""
    seen: list[int] = []

    async def process(msg: Message) -> None:
        seen.append(msg.offset)
        if msg.offset == 2:
            raise ValueError("poison")

    group = Group()
    session = make_session(process, group=group)
    with structlog.testing.capture_logs() as logs:
        async with running(session):
            await deliver_all(session, [batch(p0=range(4), bad=[1])])
            await session.commit()
    assert seen == [0, 2, 3]
    assert group.commits == [{TP0: 4}]
    assert process_spans(spans) == [
        ("process chat", "g", StatusCode.UNSET),
        ("process chat", "g", StatusCode.ERROR),
        ("process chat", "g", StatusCode.UNSET),
    ]
    skipped = [e["offset"] for e in logs if e["event"].startswith("mq message skipped")]
    assert skipped == [1, 2]


async def test_with_spans_on_each_batch_call_has_its_process_span(
    spans: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    """Spans on, a batch processor: each call gets a ``process chat`` span of the group,
    an error status when the call failed. Kills ``Session._settle`` 10, 20."""
    calls: list[list[int]] = []

    async def process(msgs: list[Message]) -> None:
        calls.append([m.offset for m in msgs])
        if any(m.offset == 1 for m in msgs):
            raise ValueError("poison")

    session = make_session(batch_processor=process)
    async with running(session):
        await deliver_all(session, [batch(p0=range(3))])
    assert calls == [[0, 1, 2], [0], [1, 2], [1], [2]]
    ok, failed = ("process chat", "g", StatusCode.UNSET), ("process chat", "g", StatusCode.ERROR)
    assert process_spans(spans) == [failed, ok, failed, failed, ok]


async def test_records_fetched_again_are_dropped_and_the_new_ones_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A batch that overlaps what was fetched before (a refetch) gives only its new
    records, once each, in order; a partition with nothing new (or nothing at all) in a
    batch does not stop the batch's other partitions. Kills ``Session._dispatch_batch``
    16, 23, 24, 25, 26, 30, 31."""
    seen: list[tuple[int, int]] = []

    async def process(msg: Message) -> None:
        seen.append((msg.partition, msg.offset))

    group = Group()
    session = make_session(process, group=group)
    async with running(session):
        await deliver_all(session, [batch(p0=range(4), p1=range(2))])
        await deliver_all(session, [batch(p0=range(2, 6))])  # 2, 3 again
        await deliver_all(session, [batch(p0=range(2, 4), p1=range(2, 3))])  # p0 all again
        empty = Batch(0, {TP0: [], TP1: records(TP1, range(3, 4))}, {TP0: 6, TP1: 4})
        await deliver_all(session, [empty])
        await session.commit()
    assert [o for p, o in seen if p == 0] == list(range(6))
    assert [o for p, o in seen if p == 1] == list(range(4))
    assert group.commits == [{TP0: 6, TP1: 4}]


async def test_a_new_incarnation_never_runs_one_partition_on_two_workers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The workers killed with more partitions waiting than workers: the new
    incarnation schedules those left with messages, marked scheduled, so a batch for one
    of them, dispatched while it waits for a worker, does not schedule it a second time
    (two free workers would then drain it at once, out of order). Kills
    ``Session.run_workers`` 5, 6."""
    running_now: dict[int, int] = {}
    peak: dict[int, int] = {}
    seen: dict[int, list[int]] = {}

    async def process(msg: Message) -> None:
        p = msg.partition
        running_now[p] = running_now.get(p, 0) + 1
        peak[p] = max(peak.get(p, 0), running_now[p])
        try:
            await trio.sleep(1)
            seen.setdefault(p, []).append(msg.offset)
        finally:
            running_now[p] -= 1

    group = Group()
    session = make_session(process, group=group, concurrency=2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.dispatch)
        async with trio.open_nursery() as workers:
            await workers.start(session.run_workers)
            await session.deliver(batch(p0=range(2), p1=range(2), p2=range(2)))
            await trio.testing.wait_all_tasks_blocked()
            assert sum(running_now.values()) == 2
            workers.cancel_scope.cancel()
        await nursery.start(session.run_workers)
        await trio.testing.wait_all_tasks_blocked()  # two partitions taken, one waits
        await session.deliver(batch(p0=range(2, 4), p1=range(2, 4), p2=range(2, 4)))
        with trio.fail_after(60):
            while session.tally.processed < 12:  # noqa: ASYNC110 (virtual time)
                await trio.sleep(0.5)
        await trio.testing.wait_all_tasks_blocked()
        await session.commit()
        nursery.cancel_scope.cancel()
    assert peak == {0: 1, 1: 1, 2: 1}, "one worker per partition at a time"
    assert seen == {p: [0, 1, 2, 3] for p in range(3)}
    assert group.commits == [{TP0: 4, TP1: 4, TP2: 4}]
