"""Issue 27's mq points against the real Kafka-wire broker (Tansu): bulk order, acks=0,
shared admin clients under concurrent calls, a stop during a rebalance, phantom
partitions after a slow revoke."""

from __future__ import annotations

import dataclasses
import gc

import trio

from gochat_actors import Bridge
from gochat_actors.mq import (
    Consumer,
    ConsumerOptions,
    Message,
    MQSettings,
    Producer,
    TopicPartition,
)
from supervisors import open_supervisor
from tests._servers import TopicFactory
from tests.gochat_actors.mq.conftest import FAST
from tests.gochat_actors.mq.test_kafka import read_topic, wait_for


async def test_send_many_lands_in_input_order_on_kafka(
    bridge: Bridge,
    kafka_settings: MQSettings,
    kafka_bootstrap: str,
    kafka_topic_factory: TopicFactory,
) -> None:
    """3,000 values in one call, max_batch 500: each partition holds them in input order."""
    topic = kafka_topic_factory("bulk-order")
    producer = Producer(kafka_settings, bridge=bridge, max_batch=500)
    async with open_supervisor([producer.spec()]):
        await producer.create_topic(topic, 2)
        values = [b"%d" % n for n in range(3000)]
        keys = [b"room:%d" % (n % 5) for n in range(3000)]
        for _ in range(2):
            await producer.send_many(topic, values, keys=keys)
    got = await read_topic(bridge, kafka_bootstrap, topic, 2, 6000)
    for partition in (0, 1):
        ordered = sorted((r for r in got if r.partition == partition), key=lambda r: r.offset)
        stored = [int(r.value) for r in ordered]
        half = len(stored) // 2
        for run in (stored[:half], stored[half:]):
            assert run == sorted(run), f"partition {partition} out of input order"


async def test_acks_zero_sends_work(
    bridge: Bridge, kafka_settings: MQSettings, kafka_bootstrap: str,
    kafka_topic_factory: TopicFactory,
) -> None:  # fmt: skip
    """acks=0: the broker does not answer, so the offset is unknown (-1); sends succeed."""
    topic = kafka_topic_factory("acks0")
    producer = Producer(kafka_settings, bridge=bridge, acks=0)
    async with open_supervisor([producer.spec()]):
        await producer.create_topic(topic, 1)
        meta = await producer.send(topic, b"a")
        assert (meta.topic, meta.partition, meta.offset) == (topic, 0, -1)
        metas = await producer.send_many(topic, [b"b", b"c"])
        assert [m.offset for m in metas] == [-1, -1]
    got = await read_topic(bridge, kafka_bootstrap, topic, 1, 3)
    assert sorted(r.value for r in got) == [b"a", b"b", b"c"]


async def test_concurrent_admin_calls_share_their_clients_safely(
    bridge: Bridge, kafka_settings: MQSettings, kafka_topic_factory: TopicFactory
) -> None:
    """Concurrent first end_offsets/create_topic calls: right answers, one client each,
    none left unclosed (a collected unclosed AIOKafkaConsumer would kill the bridge)."""
    topics = [kafka_topic_factory(f"admin-{n}") for n in range(4)]
    producer = Producer(kafka_settings, bridge=bridge)
    ends: dict[str, dict[TopicPartition, int]] = {}
    async with open_supervisor([producer.spec()]):
        async with trio.open_nursery() as nursery:
            for n, topic in enumerate(topics):
                nursery.start_soon(producer.create_topic, topic, n + 1)
        for n, topic in enumerate(topics):
            for _ in range(n + 1):
                await producer.send(topic, b"x", partition=0)

        async def end(topic: str) -> None:
            ends[topic] = await producer.end_offsets([TopicPartition(topic, 0)])

        async with trio.open_nursery() as nursery:
            for topic in topics:
                nursery.start_soon(end, topic)
        assert {t: e[TopicPartition(t, 0)] for t, e in ends.items()} == {
            t: n + 1 for n, t in enumerate(topics)
        }
        gc.collect()
        await trio.sleep(0.1)
        assert await producer.end_offsets([TopicPartition(topics[0], 0)]) == {
            TopicPartition(topics[0], 0): 1
        }


async def test_stopping_during_a_revoke_commits_the_revoked_partition_on_kafka(
    bridge: Bridge,
    kafka_settings: MQSettings,
    kafka_topic_factory: TopicFactory,
    kafka_group_id: str,
) -> None:
    """A member stopped while its revoke waits for a message in flight commits what it
    finished of the revoked partition (no AttributeError on the closed consumer)."""
    topic = kafka_topic_factory("stop-revoke")
    producer = Producer(kafka_settings, bridge=bridge)
    stuck = trio.Event()

    async def first(msg: Message) -> None:
        if msg.offset == 2:
            stuck.set()
            await trio.sleep_forever()

    async def second(msg: Message) -> None:
        await trio.sleep_forever()

    # The group waits for a's rejoin (rebalance_timeout): its commits stay valid until
    # it leaves, whatever the timing of the stop.
    patient = dataclasses.replace(FAST, rebalance_timeout=30.0)

    def member(processor: object) -> Consumer:
        return Consumer(
            topics=[topic], group_id=kafka_group_id, processor=processor,  # type: ignore[arg-type]
            settings=kafka_settings, bridge=bridge, options=patient, commit_interval=1000.0,
            revoke_timeout=30.0,
        )  # fmt: skip

    a, b = member(first), member(second)
    tp = TopicPartition(topic, 0)
    async with open_supervisor([producer.spec()]) as sup:
        await producer.create_topic(topic, 1)
        for n in range(4):
            await producer.send(topic, b"%d" % n)
        await sup.start_child(a.spec("a"))
        with trio.fail_after(30):
            await stuck.wait()
        await sup.start_child(b.spec("b"))

        def revoking() -> bool:
            part = a._session.parts.get(tp) if a._session is not None else None
            return part is not None and part.revoked

        await wait_for(revoking, 30)
        await sup.terminate_child("a")
        assert await producer.committed(kafka_group_id, [tp]) == {tp: 2}
        await sup.terminate_child("b")


async def test_no_phantom_partitions_after_a_slow_revoke(
    bridge: Bridge,
    kafka_settings: MQSettings,
    kafka_topic_factory: TopicFactory,
    kafka_group_id: str,
) -> None:
    """A member whose revoke waits for slow work ends up with its own partitions only:
    empty polls during the revoke do not bring the old assignment back."""
    topic = kafka_topic_factory("phantom")
    producer = Producer(kafka_settings, bridge=bridge)
    slow = trio.Event()

    async def first(msg: Message) -> None:
        if msg.value == b"slow":
            slow.set()
            await trio.sleep(3.0)

    async def second(msg: Message) -> None:
        pass

    def member(processor: object, revoke_timeout: float) -> Consumer:
        return Consumer(
            topics=[topic], group_id=kafka_group_id, processor=processor,  # type: ignore[arg-type]
            settings=kafka_settings, bridge=bridge, options=FAST, commit_interval=0.2,
            revoke_timeout=revoke_timeout,
        )  # fmt: skip

    a, b = member(first, 2.0), member(second, 5.0)
    async with open_supervisor([producer.spec()]) as sup:
        await producer.create_topic(topic, 4)
        await sup.start_child(a.spec("a"))
        await wait_for(lambda: len(a.statistics().assigned) == 4, 30)
        await producer.send(topic, b"slow", partition=0)
        with trio.fail_after(30):
            await slow.wait()
        await sup.start_child(b.spec("b"))

        def split() -> bool:
            mine, theirs = a.statistics().assigned, b.statistics().assigned
            return bool(mine) and bool(theirs) and mine.isdisjoint(theirs) and (
                len(mine | theirs) == 4)  # fmt: skip

        await wait_for(split, 30)
        await trio.sleep(3.0)  # what a phantom needs to show: a few empty polls
        assert split(), (a.statistics().assigned, b.statistics().assigned)


async def test_max_poll_interval_reaches_aiokafka(
    bridge: Bridge, kafka_settings: MQSettings, kafka_topic_factory: TopicFactory,
    kafka_group_id: str,
) -> None:  # fmt: skip
    """ConsumerOptions.max_poll_interval is aiokafka's max_poll_interval_ms."""
    topic = kafka_topic_factory("poll-interval")
    options = dataclasses.replace(FAST, max_poll_interval=42.0)

    async def process(msg: Message) -> None:
        pass

    consumer = Consumer(
        topics=[topic], group_id=kafka_group_id, processor=process, settings=kafka_settings,
        bridge=bridge, options=options,
    )  # fmt: skip
    async with open_supervisor([consumer.spec("c")]):
        session = consumer._session
        assert session is not None
        aio = session.group._consumer  # type: ignore[attr-defined]
        assert aio._coordinator._max_poll_interval == 42.0


async def test_fetch_max_wait_reaches_aiokafka(
    bridge: Bridge, kafka_settings: MQSettings, kafka_topic_factory: TopicFactory,
    kafka_group_id: str,
) -> None:  # fmt: skip
    """ConsumerOptions.fetch_max_wait is aiokafka's fetch_max_wait_ms: how long the
    broker may hold a fetch that finds no new record (Tansu holds it that long even if
    a record comes meanwhile; docs/benchmarks.md, pipeline-latency)."""
    topic = kafka_topic_factory("fetch-wait")
    options = dataclasses.replace(FAST, fetch_max_wait=0.02)

    async def process(msg: Message) -> None:
        pass

    consumer = Consumer(
        topics=[topic], group_id=kafka_group_id, processor=process, settings=kafka_settings,
        bridge=bridge, options=options,
    )  # fmt: skip
    async with open_supervisor([consumer.spec("c")]):
        session = consumer._session
        assert session is not None
        aio = session.group._consumer  # type: ignore[attr-defined]
        assert aio._fetcher._fetch_max_wait_ms == 20


async def test_a_consumer_stopped_mid_join_exits_promptly(
    bridge: Bridge, kafka_settings: MQSettings, kafka_topic_factory: TopicFactory,
    kafka_group_id: str,
) -> None:  # fmt: skip
    """Stopped 0.5 s into its group join (which the broker holds for seconds with the
    default rebalance timeout), a consumer exits within about JOIN_GRACE, not when the
    join returns; a new member of the group then joins and gets the partition."""
    from gochat_actors.mq._kafka import JOIN_GRACE

    topic = kafka_topic_factory("mid-join")
    producer = Producer(kafka_settings, bridge=bridge)
    options = ConsumerOptions(poll_timeout=0.2)  # default session/rebalance timeouts

    async def process(msg: Message) -> None:
        pass

    def member() -> Consumer:
        return Consumer(
            topics=[topic], group_id=kafka_group_id, processor=process,
            settings=kafka_settings, bridge=bridge, options=options,
        )  # fmt: skip

    first, second = member(), member()
    async with open_supervisor([producer.spec()]) as sup:
        await producer.create_topic(topic, 1)
        await sup.start_child(first.spec("first"))
        await trio.sleep(0.5)  # into the join
        assert not first.statistics().assigned, "still joining"
        start = trio.current_time()
        await sup.terminate_child("first")
        took = trio.current_time() - start
        start = trio.current_time()
        await sup.start_child(second.spec("second"))
        await wait_for(lambda: len(second.statistics().assigned) == 1, 60)
        joined = trio.current_time() - start
    print(f"stopped mid-join in {took:.2f}s; the next member joined in {joined:.2f}s")
    assert took < JOIN_GRACE + 1.5, f"took {took:.2f}s"
