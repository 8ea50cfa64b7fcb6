"""A consumer made without settings inside a service takes the service's broker (issue
21 point 3): it never consumes from an in-process broker the producer does not write to."""

from __future__ import annotations

import trio
import trio.testing

from gochat_actors import load_settings, open_service
from gochat_actors.mq import MemoryBroker, Message, consumer_spec
from tests._servers import TopicFactory

from .conftest import FAST


async def test_a_consumer_without_settings_in_a_kafka_service_reads_kafka(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory, kafka_group_id: str
) -> None:
    # Regression: it consumed from the in-process broker of the trio.run, where the
    # service's producer (on Kafka) never wrote: the message never arrived.
    topic = kafka_topic_factory("service-broker")
    got: list[bytes | None] = []
    arrived = trio.Event()

    async def processor(msg: Message) -> None:
        got.append(msg.value)
        arrived.set()

    settings = load_settings(
        http={"enabled": False}, mq={"brokers": kafka_bootstrap, "client_id": "gochat-tests"}
    )
    async with open_service(settings, components=["producer"]) as service:
        await service.add_child(
            consumer_spec(
                "c", topics=[topic], group_id=kafka_group_id, processor=processor, options=FAST
            )
        )
        await service.producer.send(topic, b"through kafka")
        with trio.fail_after(30):
            await arrived.wait()
    assert got == [b"through kafka"]


async def test_a_consumer_without_settings_follows_the_services_memory_broker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from gochat_actors.testing import open_test_service

    got: list[bytes | None] = []

    async def processor(msg: Message) -> None:
        got.append(msg.value)

    async with open_test_service() as service:
        await service.add_child(consumer_spec("c", topics=["t"], group_id="g", processor=processor))
        await service.producer.send("t", b"x")
        await trio.sleep(5)
        assert got == [b"x"]
        assert service.faults.broker is not None


async def test_outside_a_service_it_is_the_runs_memory_broker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from gochat_actors.mq import MQSettings, Producer
    from supervisors import open_supervisor

    got: list[bytes | None] = []

    async def processor(msg: Message) -> None:
        got.append(msg.value)

    producer = Producer(MQSettings())
    spec = consumer_spec("c", topics=["t"], group_id="g", processor=processor)
    async with open_supervisor([producer.spec(), spec]):
        await producer.send("t", b"y")
        await trio.sleep(5)
    assert got == [b"y"]
    assert isinstance(MemoryBroker(), MemoryBroker)
