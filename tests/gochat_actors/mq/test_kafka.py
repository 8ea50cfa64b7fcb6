"""The producer and consumers against a real Kafka-wire broker (Tansu): round trips,
dead letters, a group that splits and takes over, 50 kills mid-batch, a paused broker."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
import trio

from gochat_actors import Bridge
from gochat_actors.log import current_trace_id, trace_context
from gochat_actors.metrics import Metrics
from gochat_actors.mq import (
    DLQ_HEADERS,
    Consumer,
    Message,
    MQSettings,
    Producer,
    TopicPartition,
)
from supervisors import Backoff, Supervisor, open_supervisor
from supervisors.testing import kill
from tests._private import PrivateServer
from tests._servers import TopicFactory
from tests.gochat_actors.mq.conftest import FAST

FAST_RETRY = Backoff(initial=0.05, maximum=0.2, jitter=0.0)


async def read_topic(
    bridge: Bridge, bootstrap: str, topic: str, partitions: int, count: int
) -> list[Any]:
    """Read ``count`` records of ``topic`` (every partition, from the start; no group)."""

    async def read() -> list[Any]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka import TopicPartition as AioTopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [AioTopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            got: list[Any] = []
            while len(got) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    got.extend(records)
            return got
        finally:
            await consumer.stop()

    with trio.fail_after(30):
        return await bridge.run_asyncio(read)


async def wait_for(predicate: Any, timeout: float = 60.0, poll: float = 0.02) -> None:
    with trio.fail_after(timeout):
        while True:  # polling is the point: the condition is on a broker
            if predicate():
                return
            await trio.sleep(poll)


async def committed_equals_ends(producer: Producer, group: str, topic: str, n: int) -> None:
    tps: Sequence[TopicPartition] = [TopicPartition(topic, p) for p in range(n)]
    ends = await producer.end_offsets(tps)
    done = await producer.committed(group, tps)
    # a partition that never had a message has nothing committed: None means 0
    assert {tp: off if off is not None else 0 for tp, off in done.items()} == ends, (done, ends)


async def test_round_trip_and_poison_to_dead_letter(
    bridge: Bridge,
    kafka_settings: MQSettings,
    kafka_bootstrap: str,
    kafka_topic_factory: TopicFactory,
    kafka_group_id: str,
) -> None:
    """Keys, headers and trace IDs arrive intact; a poison message goes to the
    dead-letter topic with every header, and the rest of its partition goes on."""
    topic, dlq = kafka_topic_factory("chat"), kafka_topic_factory("chat-dlq")
    metrics = Metrics()
    producer = Producer(kafka_settings, bridge=bridge, metrics=metrics)
    got: dict[bytes | None, tuple[Message, str | None]] = {}

    async def persist(msg: Message) -> None:
        if msg.value == b"poison":
            raise ValueError("cannot persist this")
        got[msg.value] = (msg, current_trace_id())

    consumer = Consumer(
        topics=[topic],
        group_id=kafka_group_id,
        processor=persist,
        settings=kafka_settings,
        bridge=bridge,
        metrics=metrics,
        retries=2,
        retry_backoff=FAST_RETRY,
        dead_letter_topic=dlq,
        options=FAST,
        commit_interval=0.2,
    )
    async with open_supervisor([producer.spec()]) as sup:
        await producer.create_topic(topic, 2)
        await producer.create_topic(dlq, 1)
        await sup.start_child(consumer.spec("persister"))
        sent = {}
        for n in range(10):
            value = b"poison" if n == 4 else b"v%d" % n
            with trace_context(f"trace-{n}"):
                sent[value] = await producer.send(
                    topic, value, key=b"room:1", headers={"room": b"1", "n": b"%d" % n}
                )
        await wait_for(lambda: consumer.statistics().processed == 10)
        assert len({m.partition for m in sent.values()}) == 1, "one key, one partition"
        for n in range(10):
            if n == 4:
                continue
            msg, bound = got[b"v%d" % n]
            assert msg.key == b"room:1"
            assert msg.headers["room"] == b"1"
            assert msg.headers["n"] == b"%d" % n
            assert msg.trace_id == bound == f"trace-{n}"
            assert msg.offset == sent[b"v%d" % n].offset
            assert msg.headers["timestamp"].isdigit()
        [dead] = await read_topic(bridge, kafka_bootstrap, dlq, 1, 1)
        headers = dict(dead.headers)
        assert set(DLQ_HEADERS) <= set(headers)
        assert headers["dlq.original_topic"] == topic.encode()
        assert headers["dlq.original_partition"] == b"%d" % sent[b"poison"].partition
        assert headers["dlq.original_offset"] == b"%d" % sent[b"poison"].offset
        assert headers["dlq.error_type"] == b"ValueError"
        assert headers["dlq.error_message"] == b"cannot persist this"
        assert headers["dlq.attempts"] == b"3"
        assert headers["trace_id"] == b"trace-4"
        assert headers["room"] == b"1"
        assert (dead.key, dead.value) == (b"room:1", b"poison")
        await trio.sleep(0.5)
        await committed_equals_ends(producer, kafka_group_id, topic, 2)
    assert metrics.mq_dead_lettered.labels(topic=topic)._value.get() == 1
    assert metrics.mq_messages_produced.labels(topic=topic)._value.get() == 10


async def test_two_consumers_split_and_one_takes_over(
    bridge: Bridge,
    kafka_settings: MQSettings,
    kafka_topic_factory: TopicFactory,
    kafka_group_id: str,
) -> None:
    """Two members share the partitions; when one leaves the other takes them all, and
    nothing is lost."""
    topic = kafka_topic_factory("split")
    producer = Producer(kafka_settings, bridge=bridge)
    seen = Counter[bytes | None]()

    async def process(msg: Message) -> None:
        seen[msg.value] += 1

    def member() -> Consumer:
        return Consumer(
            topics=[topic],
            group_id=kafka_group_id,
            processor=process,
            settings=kafka_settings,
            bridge=bridge,
            options=FAST,
            commit_interval=0.2,
        )

    a, b = member(), member()
    async with open_supervisor([producer.spec()]) as sup:
        await producer.create_topic(topic, 4)
        await sup.start_child(a.spec("a"))
        await sup.start_child(b.spec("b"))
        await wait_for(lambda: a.statistics().assigned and b.statistics().assigned)
        await wait_for(lambda: len(a.statistics().assigned | b.statistics().assigned) == 4)
        assert a.statistics().assigned.isdisjoint(b.statistics().assigned)
        await send_many(producer, topic, range(400))
        await wait_for(lambda: len(seen) == 400)
        assert a.statistics().processed, "both did a share"
        assert b.statistics().processed, "both did a share"
        await sup.terminate_child("b")
        await send_many(producer, topic, range(400, 800))
        await wait_for(lambda: len(a.statistics().assigned) == 4)
        await wait_for(lambda: len(seen) == 800)
        await trio.sleep(0.5)
        await committed_equals_ends(producer, kafka_group_id, topic, 4)
    assert set(seen) == {b"%d" % n for n in range(800)}


async def send_many(producer: Producer, topic: str, ids: range) -> None:
    async def one(chunk: range) -> None:
        for n in chunk:
            await producer.send(topic, b"%d" % n)

    async with trio.open_nursery() as nursery:
        for start in range(ids.start, ids.stop, 100):
            nursery.start_soon(one, range(start, min(start + 100, ids.stop)))


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_killed_mid_batch_fifty_times(
    bridge: Bridge,
    kafka_settings: MQSettings,
    kafka_topic_factory: TopicFactory,
    kafka_group_id: str,
) -> None:
    """10,000 messages, the consumer killed mid-batch 50 times: every message processed at
    least once, duplicates only among those in flight at a kill, and the committed
    offsets end at the end offsets."""
    topic = kafka_topic_factory("kills")
    total, kills = 10_000, 50
    producer = Producer(kafka_settings, bridge=bridge)
    processed = Counter[bytes | None]()
    interrupted: set[bytes | None] = set()

    async def process(msg: Message) -> None:
        try:
            await trio.sleep(0.0005)
        except trio.Cancelled:
            interrupted.add(msg.value)  # in flight when the kill landed
            raise
        processed[msg.value] += 1

    consumer = Consumer(
        topics=[topic],
        group_id=kafka_group_id,
        processor=process,
        settings=kafka_settings,
        bridge=bridge,
        options=FAST,
        concurrency=4,
        commit_interval=0.5,
    )
    # Restarts back off briefly: with the default backoff (up to 5 s) the 50 restarts
    # spent four minutes waiting and the kills themselves one.
    async with open_supervisor(
        [producer.spec()], max_restarts=1000, max_seconds=1, backoff=FAST_RETRY
    ) as sup:
        await producer.create_topic(topic, 4)
        await send_many(producer, topic, range(total))
        await sup.start_child(consumer.spec("consumer", shutdown=10.0))
        quota = total // (kills * 2)  # per incarnation: 50 kills well before the end
        for n in range(1, kills + 1):
            await wait_for(lambda n=n: consumer.statistics().sessions == n, 120)
            base = consumer.statistics().processed

            def mid_batch(base: int = base) -> bool:
                s = consumer.statistics()
                return s.processed >= base + quota and s.buffered + s.in_flight > 0

            await wait_for(mid_batch, 120, poll=0.002)
            kill(sup, "consumer", RuntimeError(f"chaos kill {n}"))
        await wait_for(lambda: len(processed) == total, 120)
        info = next(c for c in sup.which_children() if c.id == "consumer")
        assert info.restarts == kills
        await sup.terminate_child("consumer")
        await committed_equals_ends(producer, kafka_group_id, topic, 4)
    assert set(processed) == {b"%d" % n for n in range(total)}
    duplicates = {value for value, count in processed.items() if count > 1}
    assert interrupted, "the kills landed while messages were being processed"
    assert duplicates <= interrupted, list(duplicates - interrupted)[:10]


@pytest.mark.slow
async def test_paused_broker_makes_the_consumer_not_ready(
    bridge: Bridge, private_tansu: PrivateServer
) -> None:
    """``kill -STOP`` the broker for 10 s: the consumer reports not ready, comes back
    after ``kill -CONT``, and nothing is lost."""
    settings = MQSettings(brokers=private_tansu.address)
    topic = "paused"
    producer = Producer(settings, bridge=bridge, timeout=5.0, probe_interval=0.5)
    seen = Counter[bytes | None]()

    async def process(msg: Message) -> None:
        seen[msg.value] += 1

    consumer = Consumer(
        topics=[topic],
        group_id="paused-group",
        processor=process,
        settings=settings,
        bridge=bridge,
        options=FAST,
        commit_interval=0.2,
        probe_interval=0.5,
        request_timeout=1.0,
    )
    async with open_supervisor([producer.spec()]) as sup:
        await producer.create_topic(topic, 2)
        await sup.start_child(consumer.spec("consumer", stall_timeout=5.0))
        await send_many(producer, topic, range(100))
        await wait_for(lambda: len(seen) == 100)
        assert sup.health().ready
        private_tansu.pause()
        try:
            await wait_for(lambda: not _ready(sup, "consumer"), 10)
            assert any("broker unreachable" in r for r in sup.health().reasons)
            await trio.sleep(10)
            assert not _ready(sup, "consumer")
        finally:
            private_tansu.resume()
        await wait_for(lambda: _ready(sup, "consumer"), 30)
        [info] = [c for c in sup.which_children() if c.id == "consumer"]
        assert info.restarts == 0, "unreachable is not stalled: no restart"
        await send_many(producer, topic, range(100, 200))
        await wait_for(lambda: len(seen) == 200, 60)
        await trio.sleep(0.5)
        await committed_equals_ends(producer, "paused-group", topic, 2)
    assert set(seen) == {b"%d" % n for n in range(200)}


def _ready(sup: Supervisor, child: str) -> bool:
    return not any(r.startswith(child + ":") for r in sup.health().reasons)


def test_aiokafka_connections_get_a_reader_limit_the_bridge_can_afford() -> None:
    import aiokafka.conn

    from gochat_actors.mq._kafka import READER_LIMIT, KafkaBackend

    before = aiokafka.conn.READER_LIMIT
    try:
        aiokafka.conn.READER_LIMIT = 2**16  # aiokafka's own
        KafkaBackend(MQSettings(brokers="127.0.0.1:9092"), Bridge()).client_options()
        assert aiokafka.conn.READER_LIMIT == READER_LIMIT
        aiokafka.conn.READER_LIMIT = READER_LIMIT * 4  # someone set more: left as it is
        KafkaBackend(MQSettings(brokers="127.0.0.1:9092"), Bridge()).client_options()
        assert aiokafka.conn.READER_LIMIT == READER_LIMIT * 4
    finally:
        aiokafka.conn.READER_LIMIT = before
