"""Kafka producer and consumer groups as supervised actors; ``[mq]`` settings.

At-least-once delivery with retries and a dead-letter topic, on aiokafka through the
asyncio bridge, or on the in-memory broker (``brokers = "memory://"``).

Example::

    from gochat_actors.mq import Message, Producer, consumer_spec

    producer = Producer(settings.mq, bridge=bridge, metrics=metrics)

    async def persist(msg: Message) -> None:
        await store(msg.key, msg.value)

    children = [
        bridge_spec,
        producer.spec("producer", depends_on=("bridge",)),
        consumer_spec("persister", topics=["chat.messages"], group_id="persister",
                      processor=persist, dead_letter_topic="chat.messages.dlq",
                      settings=settings.mq, bridge=bridge, metrics=metrics,
                      depends_on=("bridge",)),
    ]
"""

from . import _metrics  # noqa: F401  (the message queue's metric families, for Metrics)
from ._connect import Connection
from ._consumer import BatchProcessor, Consumer, ConsumerStatistics, Processor, consumer_spec
from ._memory import MemoryBackend, MemoryBroker
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
from ._producer import Producer
from ._protocol import (
    Batch,
    ConsumerOptions,
    GroupConsumer,
    GroupHandler,
    MQBackend,
    OutgoingRecord,
    RawRecord,
    RecordMetadata,
    TopicPartition,
    murmur2_partition,
)
from ._replay import replay_processor
from ._settings import MQSettings

__all__ = [
    "DLQ_ATTEMPTS",
    "DLQ_ERROR_MESSAGE",
    "DLQ_ERROR_TYPE",
    "DLQ_HEADERS",
    "DLQ_ORIGINAL_OFFSET",
    "DLQ_ORIGINAL_PARTITION",
    "DLQ_ORIGINAL_TOPIC",
    "TIMESTAMP_HEADER",
    "TRACE_ID_HEADER",
    "Batch",
    "BatchProcessor",
    "Connection",
    "Consumer",
    "ConsumerOptions",
    "ConsumerStatistics",
    "GroupConsumer",
    "GroupHandler",
    "MQBackend",
    "MQSettings",
    "MemoryBackend",
    "MemoryBroker",
    "Message",
    "OutgoingRecord",
    "Processor",
    "Producer",
    "RawRecord",
    "RecordMetadata",
    "TopicPartition",
    "consumer_spec",
    "murmur2_partition",
    "replay_processor",
]
