"""W3C trace context on messages, no OpenTelemetry needed: the producer writes
``traceparent`` beside the seed's ``trace_id`` (one trace ID); the consumer continues
from ``traceparent``, else ``trace_id``, else starts a trace; logs carry both IDs."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio
import trio.testing

from gochat_actors import log
from gochat_actors.log import current_span_id, current_trace_id, trace_context
from gochat_actors.mq import (
    Consumer,
    ConsumerOptions,
    MemoryBroker,
    Message,
    MQSettings,
    OutgoingRecord,
    Producer,
)
from gochat_actors.tracing import is_w3c_trace_id, parse_traceparent
from supervisors import open_supervisor

OPTIONS = ConsumerOptions(max_records=20, poll_timeout=0.5)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"

Seen = tuple[Message, str | None, str | None]


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    log.reset()


async def through(
    broker: MemoryBroker, send: Callable[[Producer], Awaitable[object]], count: int
) -> list[Seen]:
    """Send with ``send``, consume ``count`` messages: each with the trace and span IDs
    bound while it was processed."""
    broker.create_topic("chat", 1)
    seen: list[Seen] = []
    all_seen = trio.Event()

    async def keep(msg: Message) -> None:
        log.get_logger("test").info("processed", offset=msg.offset)
        seen.append((msg, current_trace_id(), current_span_id()))
        if len(seen) == count:
            all_seen.set()

    producer = Producer(MQSettings(), broker=broker)
    consumer = Consumer(
        topics=["chat"], group_id="g", processor=keep, broker=broker, options=OPTIONS
    )
    async with open_supervisor([producer.spec(), consumer.spec("consumer")]):
        await send(producer)
        with trio.fail_after(60):
            await all_seen.wait()
    return seen


def headers_of(msg: Message) -> dict[str, bytes]:
    return dict(msg.headers)


async def test_a_sent_message_carries_one_trace_in_both_headers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def send(producer: Producer) -> None:
        await producer.send("chat", b"new trace")
        with trace_context(TRACE):
            await producer.send("chat", b"bound trace")
        with trace_context("req-7"):  # not W3C-shaped: the seed's header only
            await producer.send("chat", b"foreign trace")

    new, bound, foreign = await through(MemoryBroker(), send, 3)
    parent = parse_traceparent(new[0].headers["traceparent"])
    assert parent is not None
    assert parent.sampled
    assert new[0].headers["trace_id"] == parent.trace_id.encode()
    assert new[0].trace_id == new[1] == parent.trace_id
    assert is_w3c_trace_id(parent.trace_id)

    parent = parse_traceparent(bound[0].headers["traceparent"])
    assert parent is not None
    assert parent.trace_id == TRACE == bound[0].trace_id == bound[1]
    assert bound[0].headers["trace_id"] == TRACE.encode()

    assert "traceparent" not in foreign[0].headers
    assert foreign[0].trace_id == foreign[1] == "req-7"


async def test_the_processing_span_is_new_per_message_and_not_the_senders(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def send(producer: Producer) -> None:
        with trace_context(TRACE):
            for n in range(3):
                await producer.send("chat", b"%d" % n)

    seen = await through(MemoryBroker(), send, 3)
    senders = set()
    for msg, trace_id, span_id in seen:
        parent = parse_traceparent(msg.headers["traceparent"])
        assert parent is not None
        senders.add(parent.span_id)
        assert trace_id == TRACE
        assert span_id is not None
        assert len(span_id) == 16
        assert span_id != parent.span_id
    assert len(senders) == 3, "one send span per send"
    assert len({span for _, _, span in seen}) == 3
    assert current_span_id() is None, "nothing stays bound"


async def test_send_many_shares_one_traceparent(autojump_clock: trio.testing.MockClock) -> None:
    async def send(producer: Producer) -> None:
        await producer.send_many("chat", [b"a", b"b", b"c"])

    seen = await through(MemoryBroker(), send, 3)
    assert len({msg.headers["traceparent"] for msg, _, _ in seen}) == 1
    assert len({msg.trace_id for msg, _, _ in seen}) == 1


async def test_callers_headers_keep_their_trace(autojump_clock: trio.testing.MockClock) -> None:
    given = f"00-{OTHER}-{SPAN}-01".encode()

    async def send(producer: Producer) -> None:
        await producer.send("chat", b"own trace_id", headers={"trace_id": TRACE.encode()})
        await producer.send("chat", b"own traceparent", headers={"traceparent": given})
        await producer.send("chat", b"foreign id", headers={"trace_id": b"req-7"})

    own_id, own_parent, foreign = await through(MemoryBroker(), send, 3)
    parent = parse_traceparent(own_id[0].headers["traceparent"])
    assert parent is not None
    assert parent.trace_id == TRACE == own_id[1]
    assert own_parent[0].headers["traceparent"] == given
    assert own_parent[0].headers["trace_id"] == OTHER.encode()
    assert own_parent[1] == OTHER
    assert "traceparent" not in foreign[0].headers
    assert foreign[1] == "req-7"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # traceparent first, even when the seed's header says otherwise
        ((("traceparent", f"00-{OTHER}-{SPAN}-01".encode()), ("trace_id", TRACE.encode())), OTHER),
        ((("traceparent", f"00-{OTHER}-{SPAN}-01".encode()),), OTHER),
        # an invalid traceparent is ignored (the W3C rule): the seed's header
        ((("traceparent", b"00-garbage"), ("trace_id", TRACE.encode())), TRACE),
        ((("trace_id", b"req-7"),), "req-7"),
        ((), None),  # neither: a new trace
    ],
)
async def test_the_consumer_continues_traceparent_else_trace_id_else_new(
    autojump_clock: trio.testing.MockClock,
    headers: tuple[tuple[str, bytes], ...],
    expected: str | None,
) -> None:
    broker = MemoryBroker()

    async def send(producer: Producer) -> None:
        broker.append([OutgoingRecord("chat", b"v", None, headers, 0, 0)])

    [(msg, trace_id, span_id)] = await through(broker, send, 1)
    if expected is None:
        assert trace_id is not None
        assert is_w3c_trace_id(trace_id)
    else:
        assert trace_id == expected
    assert msg.trace_id == trace_id
    assert span_id is not None
    assert len(span_id) == 16


async def test_log_lines_carry_trace_id_and_span_id(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    log.configure(log.LogSettings())

    async def send(producer: Producer) -> None:
        with trace_context(TRACE):
            await producer.send("chat", b"hi")

    [(_, trace_id, span_id)] = await through(MemoryBroker(), send, 1)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    [line] = [line for line in lines if line["event"] == "processed"]
    assert (line["trace_id"], line["span_id"]) == (trace_id, span_id) == (TRACE, span_id)
    assert list(line).index("span_id") == list(line).index("trace_id") + 1


def test_a_message_binding_binds_each_message_and_restores_once() -> None:
    from gochat_actors._tracing import disable, message_binding

    disable()
    binding = message_binding()
    assert binding is not None
    binding.unbind()  # nothing bound yet: a no-op
    with trace_context(TRACE):
        seen = []
        for trace_id in (OTHER, "req-7", OTHER):
            binding.bind(trace_id)
            seen.append((current_trace_id(), current_span_id()))
        assert [t for t, _ in seen] == [OTHER, "req-7", OTHER]
        spans = [s for _, s in seen]
        assert all(s is not None and len(s) == 16 for s in spans)
        assert len(set(spans)) == 3, "a span ID per message"
        binding.unbind()
        assert (current_trace_id(), current_span_id()) == (TRACE, None), "the outer context"
        binding.bind(OTHER)  # a new run after an unbind
        assert current_trace_id() == OTHER
        binding.unbind()
        assert (current_trace_id(), current_span_id()) == (TRACE, None)
    assert current_trace_id() is None


async def test_messages_after_a_failure_keep_their_own_trace_and_the_retry_log_none(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Spans off, a worker binds the IDs of the messages of a slice one after another
    and resets them once: a retry's warning carries the failed message's trace ID (given)
    and no span ID of the failed attempt; each message keeps its own trace and span."""
    from supervisors import Backoff

    log.configure(log.LogSettings())
    broker = MemoryBroker()
    broker.create_topic("chat", 1)
    traces = [OTHER, TRACE, "req-7", OTHER]
    seen: list[tuple[int, str | None, str | None]] = []
    failed = False
    all_seen = trio.Event()

    async def keep(msg: Message) -> None:
        nonlocal failed
        seen.append((msg.offset, current_trace_id(), current_span_id()))
        if msg.offset == 1 and not failed:
            failed = True
            raise RuntimeError("once")
        if len(seen) == len(traces) + 1:
            all_seen.set()

    broker.append(
        [OutgoingRecord("chat", b"v", None, (("trace_id", t.encode()),), 0, 0) for t in traces]
    )
    consumer = Consumer(
        topics=["chat"],
        group_id="g",
        processor=keep,
        broker=broker,
        options=OPTIONS,
        retry_backoff=Backoff(initial=0.01, maximum=0.01, jitter=0.0),
    )
    with trace_context("outer"):
        async with open_supervisor([consumer.spec("consumer")]):
            with trio.fail_after(60):
                await all_seen.wait()
        assert current_trace_id() == "outer"
    assert [(o, t) for o, t, _ in seen] == [
        (0, OTHER),
        (1, TRACE),
        (1, TRACE),
        (2, "req-7"),
        (3, OTHER),
    ]
    spans = [s for _, _, s in seen]
    assert all(s is not None for s in spans)
    assert len(set(spans)) == len(spans), "a new span per attempt"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    [warning] = [line for line in lines if line["event"] == "mq processing failed; retrying"]
    assert warning["trace_id"] == TRACE
    assert warning.get("span_id") not in spans, "not the failed attempt's span"
