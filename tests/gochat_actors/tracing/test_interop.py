"""Interop with the ecosystem's own instrumentation, on the real Kafka-wire broker:
a message our producer sends is consumed by a plain asyncio ``aiokafka`` consumer
instrumented with ``opentelemetry-instrumentation-aiokafka``, whose span is a child of
our ``send`` span; and a plain instrumented ``aiokafka`` producer's message is
processed by our consumer, whose ``process`` span is a child of its ``send`` span.

The instrumentation patches aiokafka's classes (ours use them too), so it is on only
while the plain client runs, which runs alone on its own asyncio loop in a thread."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import trio
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gochat_actors import Bridge
from gochat_actors.mq import Consumer, Message, MQSettings, Producer
from supervisors import open_supervisor
from tests._servers import TopicFactory
from tests.gochat_actors.mq.conftest import FAST

INSTRUMENTATION = "opentelemetry.instrumentation.aiokafka"
T = TypeVar("T")


@contextmanager
def instrumented(provider: TracerProvider) -> Iterator[None]:
    instrumentor = AIOKafkaInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


async def on_plain_asyncio(fn: Callable[[], Awaitable[T]]) -> T:
    """``fn()`` on a plain asyncio loop of its own, in a thread (no bridge, no trio)."""

    def run() -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(fn(), 60)

        return asyncio.run(bounded())

    return await trio.to_thread.run_sync(run)


def theirs(spans: InMemorySpanExporter, kind: SpanKind) -> ReadableSpan:
    [span] = [
        s
        for s in spans.get_finished_spans()
        if s.instrumentation_scope is not None
        and s.instrumentation_scope.name == INSTRUMENTATION
        and s.kind is kind
    ]
    return span


def ours(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [
        s
        for s in spans.get_finished_spans()
        if s.instrumentation_scope is not None
        and s.instrumentation_scope.name == "gochat_actors"
        and s.name == name
    ]
    return span


def ids(span: ReadableSpan) -> tuple[int, int]:
    ctx = span.get_span_context()
    assert ctx is not None
    return ctx.trace_id, ctx.span_id


async def test_a_plain_instrumented_consumer_continues_our_send(
    spans: InMemorySpanExporter,
    provider: TracerProvider,
    bridge: Bridge,
    kafka_settings: MQSettings,
    kafka_bootstrap: str,
    kafka_topic_factory: TopicFactory,
) -> None:
    topic = kafka_topic_factory("interop-ours-to-theirs")
    producer = Producer(kafka_settings, bridge=bridge)
    async with open_supervisor([producer.spec()]):
        await producer.create_topic(topic, 1)
        await producer.send(topic, b"hello from trio", key=b"room:1")
    send = ours(spans, f"send {topic}")

    async def consume() -> Any:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            return await consumer.getone()
        finally:
            await consumer.stop()

    with instrumented(provider):
        record = await on_plain_asyncio(consume)
    assert record.value == b"hello from trio"
    receive = theirs(spans, SpanKind.CONSUMER)
    assert receive.parent is not None
    assert ids(receive)[0] == ids(send)[0], "the same trace"
    assert receive.parent.span_id == ids(send)[1], "a child of our send span"


async def test_our_consumer_continues_a_plain_instrumented_send(
    spans: InMemorySpanExporter,
    provider: TracerProvider,
    bridge: Bridge,
    kafka_settings: MQSettings,
    kafka_bootstrap: str,
    kafka_topic_factory: TopicFactory,
    kafka_group_id: str,
) -> None:
    topic = kafka_topic_factory("interop-theirs-to-ours")
    producer = Producer(kafka_settings, bridge=bridge)

    async def produce() -> None:
        from aiokafka import AIOKafkaProducer

        plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await plain.start()
        try:
            await plain.send_and_wait(topic, b"hello from asyncio")
        finally:
            await plain.stop()

    got: list[Message] = []
    processed = trio.Event()

    async def process(msg: Message) -> None:
        got.append(msg)
        processed.set()

    consumer = Consumer(
        topics=[topic],
        group_id=kafka_group_id,
        processor=process,
        settings=kafka_settings,
        bridge=bridge,
        options=FAST,
    )
    async with open_supervisor([producer.spec()]) as sup:
        await producer.create_topic(topic, 1)
        with instrumented(provider):
            await on_plain_asyncio(produce)
        send = theirs(spans, SpanKind.PRODUCER)
        await sup.start_child(consumer.spec("consumer"))
        with trio.fail_after(60):
            await processed.wait()
    [msg] = got
    assert msg.value == b"hello from asyncio"
    process_span = ours(spans, f"process {topic}")
    assert process_span.parent is not None
    assert ids(process_span)[0] == ids(send)[0], "the same trace"
    assert process_span.parent.span_id == ids(send)[1], "a child of their send span"
    assert msg.trace_id == f"{ids(send)[0]:032x}", "the trace ID the logs carry"
