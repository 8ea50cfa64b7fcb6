"""Kafka through aiokafka, bridged into trio by trio-asyncio."""

from __future__ import annotations

import asyncio

import trio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gochat_actors._aiocompat import load_trio_asyncio
from tests._servers import TopicFactory

trio_asyncio = load_trio_asyncio()  # on any Python: gochat_actors/_aiocompat.py


async def test_topic_produce_consume_commit(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory, kafka_group_id: str
) -> None:
    """Create a topic, produce with headers, consume in a group, commit, read the commit back."""
    topic = kafka_topic_factory("smoke")
    tp = TopicPartition(topic, 0)

    async def work() -> tuple[bytes | None, list[tuple[str, bytes]], int, int | None]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            created = await admin.create_topics([NewTopic(topic, 1, 1)])
            assert [e[1] for e in created.topic_errors] == [0]
        finally:
            await admin.close()

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                topic, b"hello", key=b"room-1", headers=[("trace_id", b"t-123")]
            )
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=kafka_group_id,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            # Tansu's group join waits for the rebalance timeout: keep it short.
            rebalance_timeout_ms=1000,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), timeout=12)
            await consumer.commit({tp: msg.offset + 1})
            committed = await consumer.committed(tp)
        finally:
            await consumer.stop()
        return msg.value, list(msg.headers), msg.offset, committed

    started = trio.current_time()
    with trio.fail_after(20):
        async with trio_asyncio.open_loop():
            value, headers, offset, committed = await trio_asyncio.aio_as_trio(work)()

    assert value == b"hello"
    assert headers == [("trace_id", b"t-123")]
    assert offset == 0
    assert committed == 1
    assert trio.current_time() - started < 15
