"""What only a batch consumer (``batch_processor=``) does, on the in-memory broker under
``autojump_clock``: its arguments, its batches' log context, commits that never pass a
batch in flight, dead letters between runs, and the Hypothesis property: any messages,
any poison ones, each good one processed once in order, each poison one dead-lettered
once. (Order, dead letters and kills for both kinds of consumer, on the memory broker
and on Tansu: ``test_consumer_conformance.py``.)"""

from __future__ import annotations

import pytest
import structlog
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from gochat_actors.log import current_trace_id
from gochat_actors.metrics import Metrics
from gochat_actors.mq import (
    Consumer,
    MemoryBroker,
    Message,
    OutgoingRecord,
    TopicPartition,
    consumer_spec,
)
from gochat_actors.testing import open_test_service
from supervisors import Backoff, open_supervisor
from tests.gochat_actors.mq.test_consumer import OPTIONS, committed, fill, wait_for

QUICK = Backoff(initial=0.1, maximum=1.0, jitter=0.0)


def batch_consumer(broker: MemoryBroker, batch_processor: object, **kw: object) -> Consumer:
    options: dict[str, object] = {
        "topics": ["chat"],
        "group_id": "g",
        "broker": broker,
        "options": OPTIONS,
        "retry_backoff": QUICK,
        **kw,
    }
    return Consumer(batch_processor=batch_processor, **options)  # type: ignore[arg-type]


def test_processor_and_batch_processor_are_exclusive() -> None:
    async def one(msg: Message) -> None:
        pass

    async def many(msgs: list[Message]) -> None:
        pass

    def sync(msgs: list[Message]) -> None:
        pass

    broker = MemoryBroker()
    with pytest.raises(TypeError, match=r"processor=.*batch_processor="):
        Consumer(topics=["chat"], group_id="g", broker=broker, processor=one, batch_processor=many)
    with pytest.raises(TypeError, match=r"exactly one of processor= .* and batch_processor="):
        Consumer(topics=["chat"], group_id="g", broker=broker)
    with pytest.raises(TypeError, match="batch_processor must be an async function"):
        batch_consumer(broker, sync)
    with pytest.raises(ValueError, match="max_batch"):
        batch_consumer(broker, many, max_batch=0)
    with pytest.raises(TypeError, match=r"processor=.*batch_processor="):
        consumer_spec("c", topics=["chat"], group_id="g", processor=one, batch_processor=many)


async def test_a_batch_has_its_own_log_context_listing_its_messages_traces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 12, partitions=1)
    seen: list[tuple[str | None, object, list[str]]] = []

    async def persist(msgs: list[Message]) -> None:
        context = structlog.contextvars.get_contextvars()
        seen.append((current_trace_id(), context.get("trace_ids"), [m.trace_id for m in msgs]))

    consumer = batch_consumer(broker, persist, max_batch=5)
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 12)
    traces = [trace for _, _, ids in seen for trace in ids]
    assert traces == [f"t-{n}" for n in range(12)], "each message keeps its trace_id"
    for bound, listed, ids in seen:
        assert listed == ids, "the batch's log context lists its messages' traces"
        if len(ids) > 1:
            assert bound is not None
            assert bound not in ids, "a trace of its own"
        else:
            assert bound == ids[0], "a batch of one runs in its message's trace"
    assert max(len(ids) for _, _, ids in seen) == 5
    assert current_trace_id() is None
    assert "trace_ids" not in structlog.contextvars.get_contextvars()


async def test_the_commit_never_passes_a_batch_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 30, partitions=1)
    gate = trio.Event()
    calls: list[list[int]] = []

    async def persist(msgs: list[Message]) -> None:
        calls.append([m.offset for m in msgs])
        if len(calls) == 2:
            await gate.wait()

    consumer = batch_consumer(broker, persist, max_batch=10, commit_interval=0.5)
    async with open_supervisor([consumer.spec("c")]):
        await trio.sleep(5)
        assert calls == [list(range(10)), list(range(10, 20))]
        assert committed(broker, partitions=1) == [10], "the second batch is in flight"
        gate.set()
        await wait_for(lambda: consumer.statistics().processed == 30)
        await trio.sleep(1)
        assert committed(broker, partitions=1) == [30]


async def test_undecodable_records_are_dead_lettered_between_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    broker.create_topic("chat", 1)
    broker.append(
        [
            OutgoingRecord("chat", b"a", None, (), 1, 0),
            OutgoingRecord("chat", b"b", None, (), 2, 0),
            OutgoingRecord("chat", b"bad", None, (("trace_id", b"\xff"),), 3, 0),
            OutgoingRecord("chat", b"c", None, (), 4, 0),
        ]
    )
    calls: list[list[bytes | None]] = []

    async def persist(msgs: list[Message]) -> None:
        calls.append([m.value for m in msgs])

    consumer = batch_consumer(broker, persist, dead_letter_topic="chat.dlq")
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 4)
    assert calls == [[b"a", b"b"], [b"c"]]
    [dead] = broker.records("chat.dlq")
    assert dead.value == b"bad"


async def test_metrics_count_messages_and_time_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 20, partitions=1)
    metrics = Metrics()

    async def persist(msgs: list[Message]) -> None:
        if any(m.offset == 7 for m in msgs):
            raise ValueError("poison")

    consumer = batch_consumer(
        broker, persist, metrics=metrics, retries=1, dead_letter_topic="chat.dlq", max_batch=20
    )
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 20)
    assert metrics.mq_messages_consumed.labels(topic="chat")._value.get() == 19
    assert metrics.mq_dead_lettered.labels(topic="chat")._value.get() == 1
    assert metrics.mq_retries.labels(topic="chat")._value.get() == 1


async def test_the_services_consumer_spec_takes_a_batch_processor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[list[bytes | None]] = []

    async def persist(msgs: list[Message]) -> None:
        got.append([m.value for m in msgs])

    async with open_test_service() as service:
        await service.producer.create_topic("t", 1)
        for n in range(5):
            await service.producer.send("t", b"%d" % n, partition=0)
        await service.add_child(
            service.consumer_spec(
                "c", topics=["t"], group_id="g", batch_processor=persist, max_batch=3
            )
        )
        await trio.sleep(5)
    assert [v for batch in got for v in batch] == [b"%d" % n for n in range(5)]
    assert max(len(batch) for batch in got) == 3


# -- the property ----------------------------------------------------------------------


async def _run_property(
    count: int, partitions: int, poison: frozenset[int], max_batch: int, retries: int
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", count, partitions=partitions)
    bad = {b"%d" % n for n in poison}
    done: dict[int, list[int]] = {}

    async def persist(msgs: list[Message]) -> None:
        assert len(msgs) <= max_batch
        assert len({m.partition for m in msgs}) == 1
        await trio.sleep(0.001 * len(msgs))
        if any(m.value in bad for m in msgs):
            raise ValueError("poison")  # a transaction rolled back: nothing kept
        for m in msgs:
            done.setdefault(m.partition, []).append(int(m.value or b""))

    consumer = batch_consumer(
        broker, persist, retries=retries, dead_letter_topic="chat.dlq", max_batch=max_batch
    )
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == count, timeout=600)
        await trio.sleep(2)
        ends = [broker.end_offset(TopicPartition("chat", p)) for p in range(partitions)]
        # a partition that never had a message has nothing committed
        assert [c or 0 for c in committed(broker, partitions=partitions)] == ends
    want: dict[int, list[int]] = {}
    for n in range(count):
        if n not in poison:
            want.setdefault(n % partitions, []).append(n)
    assert done == want, "every good message once, in order per partition"
    dead = sorted(int(r.value or b"") for r in broker.records("chat.dlq"))
    assert dead == sorted(poison), "every poison message dead-lettered once"


@settings(max_examples=60, deadline=None)
@given(
    data=st.integers(1, 80).flatmap(
        lambda count: st.tuples(
            st.just(count),
            st.integers(1, 3),
            st.frozensets(st.integers(0, count - 1), max_size=count),
            st.integers(1, 40),
            st.integers(0, 2),
        )
    )
)
def test_any_messages_any_poison_each_good_one_once_in_order(
    data: tuple[int, int, frozenset[int], int, int],
) -> None:
    trio.run(_run_property, *data, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_a_long_bisection_keeps_the_stall_watchdog_fed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each run of a batch that finishes is progress: a bisection that takes longer than
    ``stall_timeout`` in all, but never that long between two finished runs, is not a
    stalled consumer (regression: progress was reported only once the batch was done)."""
    broker = MemoryBroker()
    fill(broker, "chat", 20, partitions=1)

    async def persist(msgs: list[Message]) -> None:
        await trio.sleep(2.0)
        if any(m.offset == 19 for m in msgs):
            raise ValueError("poison")

    consumer = batch_consumer(broker, persist, retries=0, max_batch=20)
    async with open_supervisor([consumer.spec("c", stall_timeout=5.0)]):
        await wait_for(lambda: consumer.statistics().processed == 20, timeout=120)
        assert consumer.statistics().sessions == 1, "never restarted as stalled"


async def test_a_rebalance_mid_batch_hands_the_whole_batch_over(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A batch still in flight when its partition is revoked (after ``revoke_timeout``) is
    cancelled: nothing of it is committed, and the new owner gets it all again."""
    broker = MemoryBroker()
    fill(broker, "chat", 40, partitions=2)
    first_seen: list[tuple[int, int]] = []
    second_seen: list[tuple[int, int]] = []
    stuck = trio.Event()

    async def first(msgs: list[Message]) -> None:
        if any((m.partition, m.offset) == (1, 5) for m in msgs):
            stuck.set()
            await trio.sleep_forever()  # never finishes: cancelled at the revoke budget
        first_seen.extend((m.partition, m.offset) for m in msgs)

    async def second(msgs: list[Message]) -> None:
        second_seen.extend((m.partition, m.offset) for m in msgs)

    a = batch_consumer(broker, first, revoke_timeout=3.0, max_batch=5)
    b = batch_consumer(broker, second, max_batch=5)
    async with open_supervisor([a.spec("a")]) as sup:
        await stuck.wait()
        await wait_for(lambda: len(first_seen) >= 25)  # p0 all 20, p1 0..4
        await sup.start_child(b.spec("b"))
        await wait_for(lambda: len(first_seen) + len(second_seen) >= 40)
        await trio.sleep(2)
        assert committed(broker, partitions=2) == [20, 20]
    owner_of_p1 = second_seen if any(p == 1 for p, _ in second_seen) else first_seen
    assert sorted(o for p, o in owner_of_p1 if p == 1 and o >= 5) == list(range(5, 20))
    assert sorted(o for p, o in first_seen if p == 1) == list(range(5)), (
        "the batch in flight at the revoke was not recorded by the first member"
    )


async def test_a_record_reaches_the_batch_processor_with_no_timer_on_the_way(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The hand-off from the poll to the batch processor waits for no timer (poll
    timeout, commit interval, a batch to fill): a record appended while the consumer
    idles is in a batch processor call at the same (virtual) instant, whatever the
    phase of those timers (docs/benchmarks.md, pipeline-latency: the breakdown)."""
    broker = MemoryBroker()
    broker.create_topic("chat", 2)
    calls: list[tuple[float, list[int]]] = []

    async def persist(msgs: list[Message]) -> None:
        calls.append((trio.current_time(), [m.offset for m in msgs]))

    consumer = batch_consumer(broker, persist)
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: len(consumer.statistics().assigned) == 2)
        for n, idle in enumerate((0.01, 0.25, 0.49, 0.5, 0.7, 1.0, 1.3)):
            await trio.sleep(idle)  # the poll waits, its timeout at another phase each time
            sent = trio.current_time()
            broker.append([OutgoingRecord("chat", b"%d" % n, partition=n % 2)])
            await wait_for(lambda: len(calls) == n + 1)  # noqa: B023 - n of this round
            at, offsets = calls[-1]
            assert at == sent, f"round {n}: processed {at - sent:.3f} s after the append"
            assert offsets == [n // 2]
