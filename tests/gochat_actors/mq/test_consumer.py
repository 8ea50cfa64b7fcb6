"""``Consumer`` on the in-memory broker, under ``autojump_clock``: order, concurrency,
commits, retries and dead letters, backpressure, rebalances, the stall watchdog,
readiness."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from aiokafka.structs import ConsumerRecord

from gochat_actors.log import current_trace_id
from gochat_actors.metrics import Metrics
from gochat_actors.mq import (
    DLQ_HEADERS,
    Consumer,
    ConsumerOptions,
    MemoryBroker,
    Message,
    MQSettings,
    OutgoingRecord,
    Producer,
    TopicPartition,
    consumer_spec,
    replay_processor,
)
from gochat_actors.mq._consumer_config import ConsumerConfig, ConsumerTally
from gochat_actors.mq._protocol import Batch
from gochat_actors.mq._session import Session
from supervisors import Backoff, ChildState, Supervisor, open_supervisor
from supervisors.testing import kill

NO_JITTER = Backoff(initial=1.0, maximum=10.0, multiplier=2.0, jitter=0.0)
OPTIONS = ConsumerOptions(max_records=20, poll_timeout=0.5)


def fill(broker: MemoryBroker, topic: str, count: int, partitions: int = 4) -> None:
    """``count`` messages round-robin over the partitions; the value is the message id."""
    broker.create_topic(topic, partitions)
    broker.append(
        [
            OutgoingRecord(topic, b"%d" % n, None, (("trace_id", b"t-%d" % n),), n, n % partitions)
            for n in range(count)
        ]
    )


def make(
    broker: MemoryBroker, processor: Callable[[Message], Awaitable[None]], **kw: object
) -> Consumer:
    options: dict[str, object] = {
        "topics": ["chat"],
        "group_id": "g",
        "broker": broker,
        "options": OPTIONS,
        "retry_backoff": NO_JITTER,
        **kw,
    }
    return Consumer(processor=processor, **options)  # type: ignore[arg-type]


async def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    with trio.fail_after(timeout):
        while True:  # polling is the point: the clock autojumps while we sleep
            if predicate():
                return
            await trio.sleep(0.05)


def committed(broker: MemoryBroker, topic: str = "chat", partitions: int = 4) -> list[int | None]:
    return [broker.committed("g", TopicPartition(topic, p)) for p in range(partitions)]


def ends(broker: MemoryBroker, topic: str = "chat", partitions: int = 4) -> list[int]:
    return [broker.end_offset(TopicPartition(topic, p)) for p in range(partitions)]


async def test_partitions_in_order_and_concurrently(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 400)
    seen: dict[int, list[int]] = {}
    running = peak = 0

    async def process(msg: Message) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(0.01 * (msg.offset % 3))
        seen.setdefault(msg.partition, []).append(msg.offset)
        running -= 1

    consumer = make(broker, process, concurrency=2)
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 400)
        await trio.sleep(2)  # a commit tick
        assert committed(broker) == ends(broker) == [100] * 4
    assert peak == 2, "two partitions at once, never more"
    assert seen == {p: list(range(100)) for p in range(4)}


async def test_commit_is_the_highest_contiguous_processed_offset(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 10, partitions=1)
    gate = trio.Event()

    async def process(msg: Message) -> None:
        if msg.offset == 5:
            await gate.wait()

    consumer = make(broker, process)
    async with open_supervisor([consumer.spec("c")]):
        await trio.sleep(5)
        assert committed(broker, partitions=1) == [5], "0..4 done, 5 in flight: commit 5"
        assert consumer.statistics().in_flight == 1
        gate.set()
        await trio.sleep(2)
        assert committed(broker, partitions=1) == [10]


async def test_retries_with_backoff_then_dead_letter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 6, partitions=1)
    attempts: list[tuple[float, int]] = []
    done: list[int] = []
    metrics = Metrics()

    async def process(msg: Message) -> None:
        if msg.offset == 2:
            attempts.append((trio.current_time(), msg.offset))
            raise ValueError("poison: cannot parse")
        done.append(msg.offset)

    consumer = make(broker, process, retries=3, dead_letter_topic="chat.dlq", metrics=metrics)
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 6)
        await trio.sleep(2)
        assert committed(broker, partitions=1) == [6]
    start = attempts[0][0]
    assert [round(t - start, 6) for t, _ in attempts] == [0, 1, 3, 7], "backoff 1, 2, 4"
    assert done == [0, 1, 3, 4, 5], "the rest of the partition went on"
    [dead] = broker.records("chat.dlq")
    headers = dict(dead.headers)
    assert set(DLQ_HEADERS) <= set(headers)
    assert headers["dlq.original_topic"] == b"chat"
    assert headers["dlq.original_partition"] == b"0"
    assert headers["dlq.original_offset"] == b"2"
    assert headers["dlq.error_type"] == b"ValueError"
    assert headers["dlq.error_message"] == b"poison: cannot parse"
    assert headers["dlq.attempts"] == b"4"
    assert headers["trace_id"] == b"t-2"
    assert dead.value == b"2"
    stats = consumer.statistics()
    assert (stats.retries, stats.dead_lettered) == (3, 1)
    assert metrics.mq_retries.labels(topic="chat")._value.get() == 3
    assert metrics.mq_dead_lettered.labels(topic="chat")._value.get() == 1
    assert metrics.mq_messages_consumed.labels(topic="chat")._value.get() == 5


async def test_a_retry_that_succeeds(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 1, partitions=1)
    tries = Counter[int]()

    async def process(msg: Message) -> None:
        tries[msg.offset] += 1
        if tries[msg.offset] < 3:
            raise ConnectionError("db blip")

    consumer = make(broker, process, dead_letter_topic="chat.dlq")
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 1)
    assert tries[0] == 3
    assert broker.records("chat.dlq") == []


async def test_processing_timeout_is_a_failure(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 2, partitions=1)

    async def process(msg: Message) -> None:
        if msg.offset == 0:
            await trio.sleep_forever()

    consumer = make(
        broker, process, retries=1, processing_timeout=5.0, dead_letter_topic="chat.dlq"
    )
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 2)
    [dead] = broker.records("chat.dlq")
    assert dict(dead.headers)["dlq.error_type"] == b"TooSlowError"


async def test_undecodable_messages_are_dead_lettered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    broker.create_topic("chat", 1)
    broker.append(
        [
            OutgoingRecord("chat", b"ok-0", None, (("trace_id", b"fine"),), 1, 0),
            OutgoingRecord("chat", b"bad", b"k", (("trace_id", b"\xff\xfe"), ("x", b"1")), 2, 0),
            OutgoingRecord("chat", b"ok-2", None, (), 3, 0),
        ]
    )
    got: list[bytes | None] = []

    async def process(msg: Message) -> None:
        got.append(msg.value)

    consumer = make(broker, process, dead_letter_topic="chat.dlq")
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 3)
    assert got == [b"ok-0", b"ok-2"]
    [dead] = broker.records("chat.dlq")
    headers = dict(dead.headers)
    assert headers["dlq.error_type"] == b"UnicodeDecodeError"
    assert headers["dlq.attempts"] == b"0"
    assert headers["x"] == b"1"
    assert len(headers["trace_id"]) == 32, "a fresh trace ID replaces the undecodable one"
    assert (dead.key, dead.value) == (b"k", b"bad")


async def test_without_a_dead_letter_topic_failures_are_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 3, partitions=1)

    async def process(msg: Message) -> None:
        if msg.offset == 1:
            raise RuntimeError("boom")

    consumer = make(broker, process, retries=0)
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 3)
        await trio.sleep(2)
        assert committed(broker, partitions=1) == [3]
    assert broker.topics() == {"chat": 1}


async def test_each_message_runs_in_its_trace_context(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 8)
    traces: dict[bytes | None, str | None] = {}

    async def process(msg: Message) -> None:
        await trio.sleep(0.01)
        traces[msg.value] = current_trace_id()
        assert current_trace_id() == msg.trace_id

    consumer = make(broker, process)
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: len(traces) == 8)
    assert traces == {b"%d" % n: f"t-{n}" for n in range(8)}
    assert current_trace_id() is None


async def test_slow_processing_pauses_fetching(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 2000, partitions=2)
    gate = trio.Event()

    async def process(msg: Message) -> None:
        await gate.wait()

    consumer = make(broker, process, max_buffered=50, concurrency=2)
    async with open_supervisor([consumer.spec("c")]):
        await trio.sleep(30)
        stats = consumer.statistics()
        assert stats.processed == 0
        assert stats.in_flight == 2
        assert stats.buffered <= 50 + OPTIONS.max_records, "bounded, never the whole topic"
        assert stats.lag == 2000
        gate.set()
        await wait_for(lambda: consumer.statistics().processed == 2000)


async def test_rebalance_waits_for_in_flight_work_then_cancels_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 40, partitions=2)
    first_seen: list[tuple[int, int]] = []
    second_seen: list[tuple[int, int]] = []
    stuck = trio.Event()

    async def first(msg: Message) -> None:
        if (msg.partition, msg.offset) == (1, 5):
            stuck.set()
            await trio.sleep_forever()  # never finishes: cancelled at the revoke budget
        first_seen.append((msg.partition, msg.offset))

    async def second(msg: Message) -> None:
        second_seen.append((msg.partition, msg.offset))

    a = make(broker, first, revoke_timeout=3.0)
    b = make(broker, second)
    async with open_supervisor([a.spec("a")]) as sup:
        await stuck.wait()
        await wait_for(lambda: len(first_seen) == 25)  # p0 all 20, p1 0..4
        start = trio.current_time()
        await sup.start_child(b.spec("b"))
        await wait_for(lambda: len(first_seen) + len(second_seen) >= 40)
        await trio.sleep(2)
    owner_of_p1 = second_seen if any(p == 1 for p, _ in second_seen) else first_seen
    assert sorted(o for p, o in owner_of_p1 if p == 1 and o >= 5) == list(range(5, 20))
    assert trio.current_time() - start >= 3.0, "the revoke waited its budget"
    assert committed(broker, partitions=2) == [20, 20]


async def test_two_members_split_and_one_takes_over(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 400)
    seen = Counter[bytes | None]()

    async def process(msg: Message) -> None:
        await trio.sleep(0.05)
        seen[msg.value] += 1

    a, b = make(broker, process), make(broker, process)
    async with open_supervisor([a.spec("a"), b.spec("b")]) as sup:
        await wait_for(lambda: bool(a.statistics().assigned and b.statistics().assigned))
        assert a.statistics().assigned.isdisjoint(b.statistics().assigned)
        await trio.sleep(2)
        await sup.terminate_child("b")
        await wait_for(lambda: len(a.statistics().assigned) == 4)
        await wait_for(lambda: len(seen) == 400)
        await trio.sleep(2)
        assert committed(broker) == ends(broker)
    assert set(seen) == {b"%d" % n for n in range(400)}


async def test_the_stall_watchdog_restarts_a_stuck_consumer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 3, partitions=1)
    calls = Counter[int]()

    async def process(msg: Message) -> None:
        calls[msg.offset] += 1
        if msg.offset == 1 and calls[1] == 1:
            await trio.sleep_forever()  # wedged once; fine after the restart

    consumer = make(broker, process)
    async with open_supervisor([consumer.spec("c", stall_timeout=20.0)]) as sup:
        await wait_for(lambda: consumer.statistics().processed == 3 and calls[1] == 2)
        [info] = sup.which_children()
        assert info.restarts == 1
        assert "made no progress" in str(info.last_error)
    assert calls == {0: 1, 1: 2, 2: 1}


async def test_an_idle_consumer_is_not_stalled(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 3, partitions=1)

    async def process(msg: Message) -> None:
        pass

    consumer = make(broker, process)
    async with open_supervisor([consumer.spec("c", stall_timeout=5.0)]) as sup:
        await trio.sleep(600)
        assert sup.which_children()[0].restarts == 0


async def test_not_ready_while_the_broker_hangs(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 10, partitions=1)
    seen: list[int] = []

    async def process(msg: Message) -> None:
        seen.append(msg.offset)

    consumer = make(broker, process, probe_interval=1.0, request_timeout=1.0)
    async with open_supervisor([consumer.spec("c", stall_timeout=5.0)]) as sup:
        await wait_for(lambda: len(seen) == 10)
        broker.pause()
        await trio.sleep(10)
        assert not sup.health().ready
        assert not consumer.statistics().broker_reachable
        assert sup.which_children()[0].restarts == 0, "unreachable is not stalled"
        broker.resume()
        broker.append([OutgoingRecord("chat", b"late", None, (), 1, 0)])
        await wait_for(lambda: len(seen) == 11)
        await trio.sleep(3)
        assert sup.health().ready
    assert seen == list(range(11))


async def test_killed_mid_batch_resumes_without_losing_anything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 1000)
    processed = Counter[bytes | None]()
    interrupted: set[bytes | None] = set()

    async def process(msg: Message) -> None:
        try:
            await trio.sleep(0.01)
        except trio.Cancelled:
            interrupted.add(msg.value)
            raise
        processed[msg.value] += 1

    consumer = make(broker, process)
    async with open_supervisor([consumer.spec("c")], max_restarts=100, max_seconds=1) as sup:
        for round_ in range(1, 11):

            def reached(target: int = round_ * 80) -> bool:
                return sum(processed.values()) >= target

            await wait_for(reached)
            kill(sup, "c", RuntimeError("chaos"))
        await wait_for(lambda: len(processed) == 1000)
        await trio.sleep(2)
        assert committed(broker) == ends(broker)
    duplicates = {value for value, n in processed.items() if n > 1}
    assert duplicates <= interrupted


def test_bad_arguments_are_typed_errors() -> None:
    async def process(msg: Message) -> None:
        pass

    def sync(msg: Message) -> None:
        pass

    broker = MemoryBroker()
    with pytest.raises(TypeError, match="topics must be a non-empty list"):
        make(broker, process, topics="chat")
    with pytest.raises(ValueError, match="group_id"):
        make(broker, process, group_id="")
    with pytest.raises(TypeError, match="processor must be an async function"):
        make(broker, sync)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="would loop forever"):
        make(broker, process, dead_letter_topic="chat")
    with pytest.raises(ValueError, match="concurrency"):
        make(broker, process, concurrency=0)
    with pytest.raises(ValueError, match="processing_timeout"):
        make(broker, process, processing_timeout=-1)
    with pytest.raises(ValueError, match="needs bridge="):
        Consumer(
            topics=["chat"],
            group_id="g",
            processor=process,
            settings=MQSettings(brokers="127.0.0.1:9092"),
        )


async def test_consumer_spec_and_metrics(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 10, partitions=2)
    metrics = Metrics()
    got: list[int] = []

    async def process(msg: Message) -> None:
        got.append(msg.offset)

    spec = consumer_spec(
        "persister",
        topics=["chat"],
        group_id="g",
        processor=process,
        broker=broker,
        metrics=metrics,
        depends_on=(),
        stall_timeout=30.0,
    )
    assert (spec.id, spec.stall_timeout, spec.shutdown) == ("persister", 30.0, 10.0)
    consumer = getattr(spec.target, "__self__", None)
    assert isinstance(consumer, Consumer)
    async with open_supervisor([spec]) as sup:
        await wait_for(lambda: len(got) == 10)
        await trio.sleep(2)
        assert isinstance(sup, Supervisor)
        lag = metrics.mq_lag.labels(topic="chat", partition="0")._value.get()
        assert lag == 0
        assert repr(consumer).endswith("running>")
    assert metrics.mq_messages_consumed.labels(topic="chat")._value.get() == 10
    [family] = metrics.mq_processing_duration.collect()
    samples = {s.name: s.value for s in family.samples if s.labels.get("topic") == "chat"}
    assert samples["gochat_mq_processing_seconds_count"] == 10
    assert not consumer.statistics().running
    assert math.isfinite(samples["gochat_mq_processing_seconds_sum"])
    assert [c.state for c in sup.which_children()] == [ChildState.TERMINATED]


async def test_replaying_the_dead_letter_topic(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 4, partitions=1)
    fixed = False
    done: list[bytes | None] = []

    async def process(msg: Message) -> None:
        if msg.offset == 1 and not fixed:
            raise ValueError("bug")
        done.append(msg.value)

    producer = Producer(MQSettings(), broker=broker)
    consumer = make(broker, process, retries=0, dead_letter_topic="chat.dlq")
    replayer = make(broker, replay_processor(producer), topics=["chat.dlq"], group_id="replay")
    async with open_supervisor([producer.spec(), consumer.spec("c")]) as sup:
        await wait_for(lambda: consumer.statistics().dead_lettered == 1)
        fixed = True  # the bug is fixed: replay what failed
        await sup.start_child(replayer.spec("replay"))
        await wait_for(lambda: len(done) == 4)
    assert done == [b"0", b"2", b"3", b"1"]
    [replayed] = broker.records("chat")[4:]
    headers = dict(replayed.headers)
    assert headers["trace_id"] == b"t-1", "the replay joins the original trace"
    assert not set(DLQ_HEADERS) & set(headers)


# -- issue 27: stop during a rebalance, readiness during dead-letter retries, DLQ fidelity --


async def test_stopping_during_a_revoke_commits_the_revoked_partitions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Stopped while a rebalance waits for its in-flight work: the final commit still
    covers the partitions being revoked (only the message in flight is redelivered)."""
    broker = MemoryBroker()
    fill(broker, "chat", 6, partitions=2)  # p0: 0 2 4, p1: 1 3 5
    stuck = trio.Event()

    async def first(msg: Message) -> None:
        if (msg.partition, msg.offset) == (0, 2):
            stuck.set()
            await trio.sleep_forever()

    async def second(msg: Message) -> None:
        pass

    a = make(broker, first, revoke_timeout=30.0, commit_interval=1000.0)
    b = make(broker, second, commit_interval=1000.0)
    async with open_supervisor([a.spec("a")]) as sup:
        await stuck.wait()
        tp0, tp1 = TopicPartition("chat", 0), TopicPartition("chat", 1)

        def finished() -> bool:
            parts = a._session.parts if a._session is not None else {}
            return (
                tp0 in parts
                and tp1 in parts
                and (parts[tp0].position, parts[tp1].position) == (2, 3)
            )

        await wait_for(finished)
        await sup.start_child(b.spec("b"))
        await trio.sleep(1.0)  # a's revoke is waiting for offset 2 of partition 0
        await sup.terminate_child("a")
        assert committed(broker, partitions=2) == [2, 3]


async def test_never_ready_while_the_broker_is_down_and_a_dead_letter_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A dead-letter send retried while the broker is down reports DEGRADED only while
    the broker answers: it never covers the broker watch's FAILED."""
    broker = MemoryBroker()
    fill(broker, "chat", 1, partitions=1)
    release = trio.Event()

    async def process(msg: Message) -> None:
        await release.wait()
        raise ValueError("poison")

    consumer = make(
        broker,
        process,
        retries=0,
        dead_letter_topic="chat.dlq",
        retry_backoff=Backoff(initial=0.3, maximum=0.3, jitter=0.0),
        probe_interval=1.0,
        request_timeout=1.0,
    )
    async with open_supervisor([consumer.spec("c", stall_timeout=1000.0)]) as sup:
        await wait_for(lambda: consumer.statistics().in_flight == 1)
        broker.set_down()
        await wait_for(lambda: not sup.health().ready)
        release.set()
        for _ in range(40):  # 4 s: a dozen dead-letter attempts, four broker pings
            await trio.sleep(0.1)
            assert not sup.health().ready, sup.health().reasons
        broker.set_down(False)
        await wait_for(lambda: consumer.statistics().dead_lettered == 1)
        await wait_for(lambda: sup.health().ready)


async def test_dead_lettering_keeps_tombstones_and_null_headers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A tombstone (value None) stays None in the dead-letter topic, a header whose value
    is null stays, and the dead letter carries a timestamp header."""
    broker = MemoryBroker()
    broker.create_topic("chat", 1)
    null_header: tuple[str, bytes] = ("deleted-by", None)  # type: ignore[assignment]
    broker.append(
        [OutgoingRecord("chat", None, b"user:7", (("trace_id", b"t-1"), null_header), 5, 0)]
    )

    async def process(msg: Message) -> None:
        raise ValueError("cannot delete")

    consumer = make(broker, process, retries=0, dead_letter_topic="chat.dlq")
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().dead_lettered == 1)
    [dead] = broker.records("chat.dlq")
    assert dead.value is None
    assert dead.key == b"user:7"
    headers: list[tuple[str, bytes | None]] = list(dead.headers)
    assert ("deleted-by", None) in headers
    assert dict(headers)["trace_id"] == b"t-1"
    assert (dict(headers)["timestamp"] or b"").isdigit()


async def test_fetched_messages_stay_within_the_stated_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """docs/mq.md's bound: at most max_buffered wait in the partition queues (never
    max_buffered plus most of a batch), max_buffered + 2 x max_records + concurrency
    held in all."""
    broker = MemoryBroker()
    fill(broker, "chat", 3000, partitions=2)
    gate = trio.Event()

    async def process(msg: Message) -> None:
        await gate.wait()

    consumer = make(broker, process, max_buffered=50, concurrency=2)
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().in_flight == 2)
        await trio.testing.wait_all_tasks_blocked()
        session = consumer._session
        assert session is not None
        held = session.buffered + consumer.statistics().in_flight
        held += sum(len(r) for b in session._receive._state.data for r in b.records.values())
        assert session.buffered <= 50
        assert held <= 50 + 2 * OPTIONS.max_records + 2
        gate.set()
        await wait_for(lambda: consumer.statistics().processed == 3000)


class StopTheProcess(BaseException):
    """Not an Exception: what a processor raises to stop everything."""


async def test_a_processor_base_exception_stops_the_tree_uncommitted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A processor's BaseException is no processing failure: no retry, no dead letter,
    its message not committed, and it goes up through the supervisor untouched."""
    broker = MemoryBroker()
    fill(broker, "chat", 3, partitions=1)
    attempts: list[int] = []

    async def process(msg: Message) -> None:
        attempts.append(msg.offset)
        if msg.offset == 1:
            raise StopTheProcess

    consumer = make(broker, process, dead_letter_topic="chat.dlq", commit_interval=0.1)
    with pytest.raises(BaseException) as caught:  # noqa: PT011  # checked just below
        async with open_supervisor([consumer.spec("c")]):
            await trio.sleep_forever()
    assert (
        caught.group_contains(StopTheProcess)
        if isinstance(caught.value, BaseExceptionGroup)
        else isinstance(caught.value, StopTheProcess)
    )
    assert attempts == [0, 1], "not retried"
    assert broker.records("chat.dlq") == [], "not dead-lettered"
    assert committed(broker, partitions=1) == [1], "committed up to it, not past it"


def test_fetch_max_wait_is_checked() -> None:
    assert ConsumerOptions().fetch_max_wait == 0.5, "aiokafka's default, 500 ms"
    assert ConsumerOptions(fetch_max_wait=0.02).fetch_max_wait == 0.02
    assert ConsumerOptions(fetch_max_wait=0).fetch_max_wait == 0, "0: answer at once"
    for bad in (-0.1, True, "0.5", float("nan")):
        with pytest.raises(ValueError, match="fetch_max_wait"):
            ConsumerOptions(fetch_max_wait=bad)  # type: ignore[arg-type]


def test_max_poll_interval_is_checked() -> None:
    assert ConsumerOptions(max_poll_interval=42.0).max_poll_interval == 42.0
    with pytest.raises(ValueError, match="max_poll_interval"):
        ConsumerOptions(max_poll_interval=0)


# -- issue 22 point 1: the processing child dies, the group membership stays ------------


async def test_killing_the_workers_costs_no_rejoin_and_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The consumer actor owns the membership; its ``workers`` child processes. Killing
    the workers mid-message puts that message back and restarts only them: same group
    generation, same session, every message processed, commits never past the work."""
    broker = MemoryBroker()
    fill(broker, "chat", 2000, partitions=4)
    seen = Counter[int]()

    async def process(msg: Message) -> None:
        await trio.sleep(0.01)
        seen[int(msg.value or b"")] += 1

    consumer = make(broker, process, commit_interval=0.1)
    async with open_supervisor([consumer.spec("c")]) as sup:
        await wait_for(lambda: consumer.statistics().processed >= 20)
        generation = broker._groups["g"].generation
        for _ in range(5):  # 2000 x 10 ms over 4 partitions: about 5 s of work
            await wait_for(lambda: consumer.statistics().in_flight > 0)
            assert kill(sup, "c/workers", RuntimeError("chaos"))
            await trio.sleep(0.2)
        assert len(seen) < 2000, "the kills landed while there was work"
        await wait_for(lambda: len(seen) == 2000)
        assert broker._groups["g"].generation == generation, "no rebalance"
        assert consumer.statistics().sessions == 1, "the actor itself never restarted"
        await trio.sleep(0.5)
        assert committed(broker) == ends(broker)
    assert set(seen) == set(range(2000))


def _session(process: Callable[[Message], Awaitable[None]], concurrency: int) -> Session:
    config = ConsumerConfig(
        group_id="g",
        processor=process,
        concurrency=concurrency,
        retries=0,
        retry_backoff=NO_JITTER,
        dead_letter_topic=None,
        processing_timeout=None,
        commit_interval=1.0,
        revoke_timeout=1.0,
        max_buffered=1000,
    )
    return Session(config, ConsumerTally(None), None, None, None)  # type: ignore[arg-type]


def _batch(offsets: range) -> Batch:
    tp = TopicPartition("chat", 0)
    records = [ConsumerRecord("chat", 0, o, 0, 0, None, b"v", None, -1, 1, ()) for o in offsets]
    return Batch(0, {tp: records}, {tp: offsets.stop})


async def test_the_next_poll_waits_until_the_workers_took_the_last_batch() -> None:
    """Issue 24: a poll hands its batch over only once the workers took the one before
    up (processed, when they keep up): records parsed while earlier ones still wait are
    fresh allocations, and a queue of them made the garbage collector run ten times as
    often as a plain aiokafka loop's. Busy workers do not hold it back (below)."""
    events: list[object] = []

    async def process(msg: Message) -> None:
        events.append(msg.offset)

    session = _session(process, concurrency=2)

    async def deliver(batch: Batch) -> None:
        await session.deliver(batch)
        events.append("second delivered")

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.dispatch)
            await nursery.start(session.run_workers)
            assert session.deliver_nowait(_batch(range(3)))
            assert not session.deliver_nowait(_batch(range(3, 6))), "the first is not taken"
            nursery.start_soon(deliver, _batch(range(3, 6)))
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert events == [0, 1, 2, "second delivered", 3, 4, 5]


async def test_workers_busy_elsewhere_do_not_hold_the_poll() -> None:
    """A processor awaiting I/O keeps its worker: batches still come in (up to
    max_buffered), as before."""
    gate = trio.Event()
    delivered: list[int] = []

    async def process(msg: Message) -> None:
        await gate.wait()

    session = _session(process, concurrency=1)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.dispatch)
            await nursery.start(session.run_workers)
            for n in range(5):
                await session.deliver(_batch(range(3 * n, 3 * n + 3)))
                delivered.append(n)
            await trio.testing.wait_all_tasks_blocked()
            assert session.buffered == 14  # one in flight
            gate.set()
            nursery.cancel_scope.cancel()
    assert delivered == [0, 1, 2, 3, 4]


async def test_a_closed_session_does_not_hold_the_poll() -> None:
    """deliver() waiting for the workers to take a batch up ends when the session
    closes (the backend's deliver fails then, as before)."""

    async def process(msg: Message) -> None:
        pass

    session = _session(process, concurrency=1)
    batch = Batch(0, {}, {})
    assert session.deliver_nowait(batch)
    assert not session.deliver_nowait(batch), "the first batch is not taken yet"
    outcome: list[str] = []

    async def deliver() -> None:
        try:
            await session.deliver(batch)
        except trio.BrokenResourceError:
            outcome.append("broken")

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(deliver)
            await trio.testing.wait_all_tasks_blocked()
            assert not outcome, "waits while the first batch is not taken"
            session.close()
    assert outcome == ["broken"]
