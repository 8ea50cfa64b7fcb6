"""Adversarial tests for the tracecost branch: the span-ID pool refilled by
``hex(sep).split()`` and ``Producer.send``'s send span entered and exited by hand."""

from __future__ import annotations

import gc
import os
import re
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from gochat_actors import MessageTooLarge, MQUnavailable, _tracing, tracing
from gochat_actors.log import current_span_id, current_trace_id, trace_context
from gochat_actors.mq import MemoryBroker, MQSettings, Producer
from gochat_actors.tracing import parse_traceparent
from supervisors import open_supervisor

HEX16 = re.compile(r"[0-9a-f]{16}")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def switch() -> Iterator[None]:
    """Restore the span switch as the test found it."""
    saved = (_tracing.SPANS.on, _tracing.SPANS.checked)
    try:
        yield
    finally:
        _tracing.SPANS.on, _tracing.SPANS.checked = saved


def no_context_left() -> None:
    assert not trace.get_current_span().get_span_context().is_valid
    assert current_span_id() is None
    assert current_trace_id() is None


# -- span IDs ---------------------------------------------------------------------------
def _next_id() -> str:
    ids = _tracing._span_ids
    return ids.pop() if ids else _tracing._more_span_ids()


def test_span_ids_are_16_lowercase_hex_never_zero_never_repeated() -> None:
    _tracing._span_ids.clear()
    seen = [_next_id() for _ in range(257 * 40 + 3)]  # many refills, crossing boundaries
    assert all(HEX16.fullmatch(i) for i in seen)
    assert "0" * 16 not in seen
    assert len(set(seen)) == len(seen)


def test_a_zero_id_from_the_os_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # the zero ID placed last: the one _more_span_ids pops and returns
    def zero_last(n: int) -> bytes:
        return bytes(range(1, 9)) * (n // 8 - 1) + bytes(8)

    _tracing._span_ids.clear()
    monkeypatch.setattr(_tracing, "urandom", zero_last)
    first = _tracing._more_span_ids()
    assert first != "0" * 16
    assert "0" * 16 not in _tracing._span_ids
    assert len(_tracing._span_ids) == 255
    _tracing._span_ids.clear()


def test_all_zero_randomness_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def zeros_once(n: int) -> bytes:
        calls.append(n)
        return bytes(n) if len(calls) == 1 else bytes([0xAB]) * n

    _tracing._span_ids.clear()
    monkeypatch.setattr(_tracing, "urandom", zeros_once)
    assert _tracing._more_span_ids() == "ab" * 8
    assert len(calls) == 2
    assert len(_tracing._span_ids) == 256
    _tracing._span_ids.clear()


# -- the send span ------------------------------------------------------------------------
def _producer(broker: MemoryBroker, **kwargs: int) -> Producer:
    broker.create_topic("chat", 1)
    return Producer(MQSettings(), broker=broker, **kwargs)  # type: ignore[arg-type]


async def test_send_span_ends_and_parents_the_traceparent(
    spans: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    broker = MemoryBroker()
    producer = _producer(broker)
    async with open_supervisor([producer.spec()]):
        for _ in range(3):
            await producer.send("chat", b"hi")
            no_context_left()
    sends = spans.get_finished_spans()
    assert len(sends) == 3
    for send, stored in zip(sends, broker.records("chat", 0), strict=True):
        header = parse_traceparent(dict(stored.headers)["traceparent"])
        assert header is not None
        ctx = send.context
        assert ctx is not None
        assert (header.trace_id, header.span_id) == (
            f"{ctx.trace_id:032x}",
            f"{ctx.span_id:016x}",
        )
        assert send.status.status_code is StatusCode.UNSET
    assert len({s.context.trace_id for s in sends if s.context}) == 3  # no trace leaked


async def test_send_span_on_error_records_the_same_exception(
    spans: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    broker = MemoryBroker()
    producer = _producer(broker)
    async with open_supervisor([producer.spec()]):
        with pytest.raises(MessageTooLarge) as too_large:
            await producer.send("chat", b"x" * 2_000_000)
        no_context_left()
        broker.set_down()
        with pytest.raises(MQUnavailable) as down:
            await producer.send("chat", b"hi", timeout=1)
        no_context_left()
        broker.set_down(False)
    # the traceback still reaches where the error was raised
    assert any(e.name == "_check_size" for e in too_large.traceback)
    assert any(e.name == "send" for e in down.traceback)
    sends = spans.get_finished_spans()
    assert len(sends) == 2
    for send, info in zip(sends, (too_large, down), strict=True):
        assert send.status.status_code is StatusCode.ERROR
        assert send.attributes is not None
        assert send.attributes["error.type"] == type(info.value).__qualname__
        [event] = send.events
        assert event.name == "exception"
        assert event.attributes is not None
        assert event.attributes["exception.message"] == str(info.value)


async def test_send_span_ends_on_cancellation_at_every_await(
    spans: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    broker = MemoryBroker()
    producer = _producer(broker, max_batch=1, max_pending=1, max_in_flight=1)
    # await 1: waiting for the producer's actor (not started yet)
    with trio.move_on_after(1) as scope:
        await producer.send("chat", b"early")
    assert scope.cancelled_caught
    no_context_left()
    broker.set_produce_delay(10)
    parked = []
    queue = producer._queue

    async def counting_queue(*args: Any) -> Any:
        parked.append(1)
        return await queue(*args)

    producer._queue = counting_queue  # type: ignore[method-assign,assignment]
    async with open_supervisor([producer.spec()]):
        done: list[str] = []

        async def one(n: int) -> None:
            with trio.move_on_after(1):
                await producer.send("chat", b"m%d" % n)
                done.append("sent")
            no_context_left()

        # in flight, queued inline, and parked for queue room (_queue): all cancelled
        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(one, n)
                await trio.testing.wait_all_tasks_blocked()
        assert done == []
        assert parked, "no send waited for queue room"
    sends = spans.get_finished_spans()
    assert len(sends) == 5
    for send in sends:
        assert send.end_time is not None
        assert send.status.status_code is StatusCode.UNSET  # cancelled is not failed
    no_context_left()


async def test_switching_spans_between_sends_takes_effect(
    switch: None, autojump_clock: trio.testing.MockClock
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _tracing.SPANS.on, _tracing.SPANS.checked = None, False  # first send before any check
    broker = MemoryBroker()
    producer = _producer(broker)
    try:
        async with open_supervisor([producer.spec()]):
            await producer.send("chat", b"1")  # looks: no global provider set -> off
            assert _tracing.SPANS.checked
            assert _tracing.SPANS.on is None
            tracing.enable(provider)  # mid-run
            await producer.send("chat", b"2")
            tracing.disable()
            await producer.send("chat", b"3")
            tracing.enable(provider)
            await producer.send("chat", b"4")
    finally:
        provider.shutdown()
    assert len(exporter.get_finished_spans()) == 2
    made = {f"{s.context.span_id:016x}" for s in exporter.get_finished_spans() if s.context}
    parents = []
    for stored in broker.records("chat", 0):
        header = parse_traceparent(dict(stored.headers)["traceparent"])
        assert header is not None
        parents.append(header.span_id in made)
    assert parents == [False, True, False, True]


@pytest.mark.parametrize("on", [False, True], ids=["spans-off", "spans-on"])
async def test_a_failed_send_leaves_no_reference_cycle(
    on: bool, switch: None, provider: TracerProvider, autojump_clock: trio.testing.MockClock
) -> None:
    # `with` keeps no reference to the exception; an `error` local kept for the exit
    # did: exception -> traceback -> send's frame -> error -> exception, so the error,
    # the frame and every local in it (record, producer...) waited for the cyclic GC
    if on:
        tracing.enable(provider)
    else:
        tracing.disable()
    broker = MemoryBroker()
    producer = _producer(broker)
    async with open_supervisor([producer.spec()]):
        gc.collect()
        gc.disable()
        try:
            try:
                await producer.send("chat", b"x" * 2_000_000)
            except MessageTooLarge as exc:
                ref = weakref.ref(exc)
            alive = ref() is not None
        finally:
            gc.enable()
    assert not alive, "the raised exception outlives its handler until a GC pass"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_hands_out_other_span_ids_than_its_parent() -> None:
    # the pool is process memory: a child forked with IDs left in it would hand out the
    # very IDs its parent hands out next (one urandom read, two processes)
    _tracing._span_ids.clear()
    _next_id()  # the pool is full now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, " ".join(_next_id() for _ in range(5)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [_next_id() for _ in range(5)]
    assert len(child) == 5
    assert not set(child) & set(parent)


async def test_a_global_provider_set_before_the_first_send_turns_spans_on(
    switch: None,
    provider: TracerProvider,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)  # as set_tracer_provider
    _tracing.SPANS.on, _tracing.SPANS.checked = None, False
    broker = MemoryBroker()
    producer = _producer(broker)
    async with open_supervisor([producer.spec()]):
        await producer.send("chat", b"1")
    assert _tracing.SPANS.checked  # looked once, at the first send
    assert tracing.is_enabled()
    [send] = exporter.get_finished_spans()
    [stored] = broker.records("chat", 0)
    header = parse_traceparent(dict(stored.headers)["traceparent"])
    assert header is not None
    assert send.context is not None
    assert header.span_id == f"{send.context.span_id:016x}"


class Stop(BaseException):
    """Not an Exception: a span must end without an error status (as trio.Cancelled)."""


@pytest.mark.parametrize("kind", [ValueError, Stop])
async def test_the_error_raised_is_the_very_object_with_its_traceback(
    kind: type[BaseException],
    spans: InMemorySpanExporter,
    provider: TracerProvider,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    from gochat_actors.mq import _producer as producer_module

    error = kind("boom")

    def bad_record(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(producer_module, "outgoing_record", bad_record)
    broker = MemoryBroker()
    producer = _producer(broker)
    outer = provider.get_tracer("test")
    async with open_supervisor([producer.spec()]):
        with trace_context(TRACE), outer.start_as_current_span("outer") as span:
            before = (current_span_id(), trace.get_current_span())
            with pytest.raises(kind) as raised:
                await producer.send("chat", b"hi")
            assert (current_span_id(), trace.get_current_span()) == before
            assert current_trace_id() == TRACE
        no_context_left()
    assert raised.value is error
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None
    assert raised.traceback[-1].name == "bad_record"
    assert raised.traceback[-2].name == "send"
    sends = [s for s in spans.get_finished_spans() if s.name == "send chat"]
    [send] = sends
    assert span.get_span_context().span_id == (send.parent.span_id if send.parent else None)
    if kind is Stop:
        assert send.status.status_code is StatusCode.UNSET
        assert not send.events
    else:
        assert send.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("turn", ["off", "on"])
async def test_switching_during_a_send_leaves_no_span_open(
    turn: str, switch: None, provider: TracerProvider, autojump_clock: trio.testing.MockClock
) -> None:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    (tracing.enable(provider) if turn == "off" else tracing.disable())
    broker = MemoryBroker()
    producer = _producer(broker)
    broker.set_produce_delay(5)
    async with open_supervisor([producer.spec()]), trio.open_nursery() as nursery:

        async def send() -> None:
            await producer.send("chat", b"hi")
            no_context_left()

        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        (tracing.disable() if turn == "off" else tracing.enable(provider))
    made = exporter.get_finished_spans()
    assert len(made) == (1 if turn == "off" else 0)
    no_context_left()
