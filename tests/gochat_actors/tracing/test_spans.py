"""OpenTelemetry spans with a tracer provider set: send/process (messaging conventions,
the process span a child of the send span), db statements inside their transaction,
cache operations, lock acquire and hold, machine-ID lease events."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest
import trio
import trio.testing
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gochat_actors import log, tracing
from gochat_actors.config import load_settings
from gochat_actors.log import current_span_id, current_trace_id, trace_context
from gochat_actors.mq import Consumer, ConsumerOptions, MemoryBroker, Message, MQSettings, Producer
from gochat_actors.service import open_service
from gochat_actors.tracing import parse_traceparent
from supervisors import open_supervisor

OPTIONS = ConsumerOptions(max_records=20, poll_timeout=0.5)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    log.reset()


def hexes(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.get_span_context()
    assert ctx is not None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def parent_of(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_process_is_a_child_of_send_and_logs_carry_its_ids(
    spans: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    broker = MemoryBroker()
    broker.create_topic("chat", 1)
    seen: list[tuple[Message, str | None, str | None, str]] = []
    both = trio.Event()

    async def keep(msg: Message) -> None:
        here = trace.get_current_span().get_span_context()
        seen.append((msg, current_trace_id(), current_span_id(), f"{here.span_id:016x}"))
        if len(seen) == 2:
            both.set()
        if msg.value == b"bad":
            raise ValueError("cannot")

    producer = Producer(MQSettings(), broker=broker)
    consumer = Consumer(
        topics=["chat"],
        group_id="persister",
        processor=keep,
        broker=broker,
        options=OPTIONS,
        retries=0,
    )
    async with open_supervisor([producer.spec(), consumer.spec("consumer")]):
        await producer.send("chat", b"hi", key=b"room:1")
        with trace_context(TRACE):  # a trace bound in the logs: the send joins it
            await producer.send("chat", b"bad")
        with trio.fail_after(60):
            await both.wait()
    finished = spans.get_finished_spans()
    sends, processes = named(finished, "send chat"), named(finished, "process chat")
    assert len(sends) == len(processes) == 2
    for send, process, (msg, trace_id, span_id, current) in zip(
        sends, processes, seen, strict=True
    ):
        send_trace, send_span = hexes(send)
        process_trace, process_span = hexes(process)
        assert send.kind is SpanKind.PRODUCER
        assert process.kind is SpanKind.CONSUMER
        header = parse_traceparent(msg.headers["traceparent"])
        assert header is not None
        assert (header.trace_id, header.span_id) == (send_trace, send_span)
        assert msg.headers["trace_id"] == send_trace.encode()
        assert process_trace == send_trace
        assert parent_of(process) == send_span
        assert (trace_id, span_id) == (send_trace, process_span)
        assert current == process_span
        assert send.attributes is not None
        assert process.attributes is not None
        assert send.attributes["messaging.system"] == "kafka"
        assert send.attributes["messaging.destination.name"] == "chat"
        assert send.attributes["messaging.operation.type"] == "send"
        assert process.attributes["messaging.operation.type"] == "process"
        assert process.attributes["messaging.consumer.group.name"] == "persister"
        assert process.attributes["messaging.kafka.offset"] == msg.offset
    assert hexes(sends[1])[0] == TRACE
    assert processes[0].status.status_code is StatusCode.UNSET
    assert processes[1].status.status_code is StatusCode.ERROR
    assert processes[1].attributes is not None
    assert processes[1].attributes["error.type"] == "ValueError"


async def test_send_many_is_one_span_for_the_batch(
    spans: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    broker = MemoryBroker()
    broker.create_topic("chat", 1)
    producer = Producer(MQSettings(), broker=broker)
    async with open_supervisor([producer.spec()]):
        await producer.send_many("chat", [b"a", b"b", b"c"])
    [send] = named(spans.get_finished_spans(), "send chat")
    assert send.attributes is not None
    assert send.attributes["messaging.batch.message_count"] == 3


async def test_db_cache_lock_and_idgen_spans(
    spans: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(idgen={"etcd": "memory://"}, http={"enabled": False})
    async with open_service(settings, components=("db", "cache", "locks", "ids")) as service:
        with trace_context(TRACE):
            async with service.db.writer() as session:
                await session.execute("CREATE TABLE rooms (id INTEGER PRIMARY KEY)")
                await session.execute("INSERT INTO rooms VALUES (1)")
            await service.cache.set("room:1", b"general")
            async with service.locks.hold("room:1:compaction"):
                assert await service.cache.get("room:1") == b"general"
                log.get_logger("test").info("holding")
    finished = spans.get_finished_spans()

    [transaction] = named(finished, "db.transaction")
    [insert] = [
        s for s in finished if s.attributes and s.attributes.get("db.operation.name") == "insert"
    ]
    assert insert.kind is SpanKind.CLIENT
    assert insert.attributes is not None
    assert insert.attributes["db.system"] == "sqlite"
    assert insert.attributes["db.collection.name"] == "rooms"
    assert parent_of(insert) == hexes(transaction)[1]
    assert hexes(transaction)[0] == TRACE, "joins the trace bound in the logs"

    [cache_set] = named(finished, "SET")
    [cache_get] = named(finished, "GET")
    assert cache_set.attributes is not None
    assert cache_set.attributes["gochat.cache.key"] == "room:1"
    [acquire] = named(finished, "lock.acquire")
    [hold] = named(finished, "lock.hold")
    assert parent_of(cache_get) == hexes(hold)[1]
    assert hold.attributes is not None
    assert hold.attributes["gochat.lock.name"] == "room:1:compaction"
    assert hexes(acquire)[0] == hexes(hold)[0] == TRACE

    assert named(finished, "idgen.acquire"), "the lease taken at start"
    assert named(finished, "idgen.released"), "and given back at the end"


async def test_logs_inside_a_span_carry_its_span_id(
    spans: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    log.configure(log.LogSettings())
    settings = load_settings(http={"enabled": False})
    async with (
        open_service(settings, components=("locks",)) as service,
        service.locks.hold("room:1"),
    ):
        log.get_logger("test").info("holding")
    [hold] = named(spans.get_finished_spans(), "lock.hold")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    [line] = [line for line in lines if line["event"] == "holding"]
    assert (line["trace_id"], line["span_id"]) == hexes(hold)


def test_enable_and_disable_switch_spans(spans: InMemorySpanExporter) -> None:
    assert tracing.is_enabled()
    tracing.disable()
    assert not tracing.is_enabled()


async def test_a_batch_call_is_one_process_span_counting_its_messages(
    spans: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    broker = MemoryBroker()
    broker.create_topic("chat", 1)
    seen: list[tuple[list[str], str | None, str | None, str]] = []

    async def keep(msgs: list[Message]) -> None:
        here = trace.get_current_span().get_span_context()
        seen.append(
            (
                [m.trace_id for m in msgs],
                current_trace_id(),
                current_span_id(),
                f"{here.span_id:016x}",
            )
        )
        if any(m.value == b"bad" for m in msgs):
            raise ValueError("cannot")

    producer = Producer(MQSettings(), broker=broker)
    consumer = Consumer(
        topics=["chat"],
        group_id="persister",
        batch_processor=keep,
        broker=broker,
        options=OPTIONS,
        retries=0,
    )
    async with open_supervisor([producer.spec()]) as sup:
        await producer.send_many("chat", [b"a", b"b", b"bad"])
        [send] = named(spans.get_finished_spans(), "send chat")
        await sup.start_child(consumer.spec("consumer"))
        with trio.fail_after(60):
            while consumer.statistics().processed < 3:  # noqa: ASYNC110 - a counter, no event
                await trio.sleep(0.1)
    processes = named(spans.get_finished_spans(), "process chat")
    # [a, b, bad] fails; [a] and [b, bad]: [b] and [bad]
    assert [len(ids) for ids, *_ in seen] == [3, 1, 2, 1, 1]
    assert len(processes) == len(seen)
    for span, (ids, trace_id, span_id, current) in zip(processes, seen, strict=True):
        assert span.kind is SpanKind.CONSUMER
        span_trace, span_span = hexes(span)
        assert (trace_id, span_id) == (span_trace, span_span), "logs carry the span's IDs"
        assert current == span_span
        assert span.attributes is not None
        if len(ids) > 1:
            assert span.attributes["messaging.batch.message_count"] == len(ids)
            assert span_trace not in ids, "a batch has a trace of its own"
            assert span.parent is None
            linked = [f"{link.context.trace_id:032x}" for link in span.links]
            assert linked == ids, "linked to each message's trace, in order"
        else:
            assert span_trace == ids[0], "a batch of one continues its message's trace"
    assert [p.status.status_code for p in processes] == [
        StatusCode.ERROR,
        StatusCode.UNSET,
        StatusCode.ERROR,
        StatusCode.UNSET,
        StatusCode.ERROR,
    ]
    assert current_trace_id() is None
    send_trace, send_span = hexes(send)
    assert {f"{link.context.span_id:016x}" for link in processes[0].links} == {send_span}
    assert seen[0][0] == [send_trace] * 3, "send_many: one trace for the lot"
