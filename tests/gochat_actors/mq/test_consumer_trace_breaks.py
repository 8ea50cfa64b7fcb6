"""Adversarial review of merge e3fd8b3 (consumeperf2): per-slice trace ID reset in the
consumer's hot path, the trace_id header's acceptance rule, observe_many's sorted path."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import structlog
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from gochat_actors import _tracing
from gochat_actors.log import bind_trace_id, current_span_id, current_trace_id, set_span
from gochat_actors.metrics import observe_many
from gochat_actors.mq import (
    Consumer,
    ConsumerOptions,
    MemoryBroker,
    Message,
    OutgoingRecord,
    _session,
)
from gochat_actors.mq._protocol import RawRecord
from supervisors import Backoff, open_supervisor

NO_JITTER = Backoff(initial=1.0, maximum=10.0, multiplier=2.0, jitter=0.0)
OPTIONS = ConsumerOptions(max_records=50, poll_timeout=0.5)


def _fill(broker: MemoryBroker, count: int, partitions: int) -> None:
    broker.create_topic("chat", partitions)
    broker.append(
        [
            OutgoingRecord("chat", b"%d" % n, None, (("trace_id", b"t-%d" % n),), n, n % partitions)
            for n in range(count)
        ]
    )


async def _wait(predicate: object, timeout: float = 120.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110 - counters
            await trio.sleep(0.05)


@pytest.mark.parametrize(("concurrency", "timeout"), [(1, None), (3, None), (3, 5.0)])
async def test_every_message_of_a_slice_sees_its_own_ids(
    autojump_clock: trio.testing.MockClock, concurrency: int, timeout: float | None
) -> None:
    """Many messages per slice (no await in most processors), partitions interleaving on
    workers, processors that raise (retry then DLQ), that rebind trace/span/contextvars
    themselves without undoing it: each call sees its message's trace ID and a fresh
    span ID, and nothing a processor bound survives into the next message's IDs."""
    _tracing.disable()
    broker = MemoryBroker()
    total = 600
    _fill(broker, total, partitions=4)
    seen: list[tuple[int, int, str | None, str | None, str]] = []  # value, attempt, ...
    attempts: dict[int, int] = {}

    async def process(msg: Message) -> None:
        n = int(msg.value or b"-1")
        attempt = attempts[n] = attempts.get(n, 0) + 1
        trace, span = current_trace_id(), current_span_id()
        ctx = structlog.contextvars.get_contextvars()
        seen.append((n, attempt, trace, span, str(ctx.get("trace_id"))))
        if n % 7 == 0:
            bind_trace_id(f"leak-{n}")  # rebinds for "the rest of the task"
        if n % 11 == 0:
            set_span(f"leak2-{n}", "ffffffffffffffff")  # never reset
        if n % 13 == 0:
            structlog.contextvars.clear_contextvars()
        if n % 17 == 0:
            await trio.sleep(0.001)  # let other workers interleave
        if n % 19 == 0 and attempt == 1:
            raise ValueError("first attempt fails")
        if n % 23 == 0:
            raise ValueError("always fails")

    consumer = Consumer(
        processor=process,
        topics=["chat"],
        group_id="g",
        broker=broker,
        options=OPTIONS,
        retry_backoff=NO_JITTER,
        retries=1,
        dead_letter_topic="chat.dlq",
        concurrency=concurrency,
        processing_timeout=timeout,
    )
    async with open_supervisor([consumer.spec("c")]):
        await _wait(lambda: consumer.statistics().processed == total)
    assert current_trace_id() is None, "the caller's task"
    assert current_span_id() is None
    spans = [s for _, _, _, s, _ in seen]
    bad = [(n, a, t, s) for n, a, t, s, c in seen if t != f"t-{n}" or c != t]
    assert bad == []
    assert None not in spans
    assert len(set(spans)) == len(spans), "a new span per call"
    assert "ffffffffffffffff" not in spans


async def test_batch_consumer_runs_leave_no_ids_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    _tracing.disable()
    broker = MemoryBroker()
    _fill(broker, 200, partitions=2)
    runs: list[tuple[list[str], str | None, object]] = []

    async def process(msgs: list[Message]) -> None:
        ctx = structlog.contextvars.get_contextvars()
        runs.append(([m.trace_id for m in msgs], current_trace_id(), ctx.get("trace_ids")))
        bind_trace_id("leak")
        if any(m.value == b"50" for m in msgs):
            raise ValueError("culprit")

    consumer = Consumer(
        batch_processor=process,
        topics=["chat"],
        group_id="g",
        broker=broker,
        options=OPTIONS,
        retry_backoff=NO_JITTER,
        retries=1,
        max_batch=16,
        concurrency=2,
    )
    async with open_supervisor([consumer.spec("c")]):
        await _wait(lambda: consumer.statistics().processed == 200)
    assert current_trace_id() is None
    for ids, trace, listed in runs:
        assert trace != "leak"
        assert list(listed) == ids  # type: ignore[call-overload]
        if len(ids) == 1:
            assert trace == ids[0]


async def test_enable_mid_run_gives_spans_from_the_next_slice(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    # A slice is measured in real time (perf_counter): under autojump_clock the 20
    # messages after enable() could all fit in one 2 ms slice on a fast host (it failed
    # in CI). One message per slice makes "the next slice" the next message.
    monkeypatch.setattr(_session, "_SLICE", 1e-9)
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    _tracing.disable()
    broker = MemoryBroker()
    _fill(broker, 40, partitions=1)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    logged: list[tuple[int, str | None, str | None]] = []

    async def process(msg: Message) -> None:
        n = int(msg.value or b"-1")
        if n == 20:
            _tracing.enable(provider)
        await trio.sleep(0.01)
        logged.append((n, current_trace_id(), current_span_id()))

    consumer = Consumer(
        processor=process, topics=["chat"], group_id="g", broker=broker, options=OPTIONS
    )
    try:
        async with open_supervisor([consumer.spec("c")]):
            await _wait(lambda: consumer.statistics().processed == 40)
    finally:
        _tracing.disable()
    assert all(t == f"t-{n}" and s for n, t, s in logged)
    assert exporter.get_finished_spans(), "spans after enable()"


# -- the trace_id header's acceptance: the same as before the merge -----------------------
def _old_rule(raw: bytes) -> str | None:
    """e3fd8b3^1 Message.from_record: the trace ID taken, or None when it raises."""
    try:
        trace_id = raw.decode("utf-8")
    except ValueError:
        return None
    if len(trace_id) > 128 or not trace_id.isprintable():
        return None
    return trace_id


def _record(raw: bytes) -> RawRecord:
    return SimpleNamespace(
        topic="chat",
        partition=0,
        offset=0,
        key=None,
        value=b"v",
        headers=[("trace_id", raw)],
        timestamp=0,
    )


@settings(max_examples=3000)
@given(st.binary(max_size=200) | st.text(max_size=140).map(str.encode))
@example(b"abc\x00")
@example(b"a" * 128)
@example(b"a" * 129)
@example("é".encode() * 64)
@example("é".encode() * 65)
@example(b"\xff")
@example(b" ")
@example(b"4bf92f3577b34da6a3ce929d0e0e4736")
def test_trace_id_acceptance_matches_the_old_rule(raw: bytes) -> None:
    if not raw:
        msg = Message.from_record(_record(raw))
        assert len(msg.trace_id) == 32, "empty: a new trace"
        return
    expected = _old_rule(raw)
    try:
        got: str | None = Message.from_record(_record(raw)).trace_id
    except ValueError:
        got = None
    assert got == expected


# -- observe_many == observe, value by value ---------------------------------------------
BOUNDS = (0.0, 0.001, 0.5, 1.0, 2.5, 10.0)
_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [*BOUNDS, -0.0, math.inf, -math.inf, math.nan, 1e308, -1e308, 5e-324]
)


def _state(h: Histogram) -> tuple[list[float], float]:
    child = h.labels(topic="t")
    return [b.get() for b in child._buckets], child._sum.get()


@settings(max_examples=1500)
@given(st.lists(_floats, max_size=40))
def test_observe_many_equals_observe(values: list[float]) -> None:
    a = Histogram("a", "a", ["topic"], buckets=BOUNDS, registry=CollectorRegistry())
    b = Histogram("b", "b", ["topic"], buckets=BOUNDS, registry=CollectorRegistry())
    for v in values:
        a.labels(topic="t").observe(v)
    observe_many(b.labels(topic="t"), values)
    (ca, sa), (cb, sb) = _state(a), _state(b)
    assert ca == cb
    assert sa == sb or (math.isnan(sa) and math.isnan(sb))


async def test_log_lines_of_processors_retries_and_dead_letters(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The log lines themselves: a processor's carry its message's trace and its own
    span; the retry and dead-letter lines carry no finished attempt's span ID."""
    _tracing.disable()
    broker = MemoryBroker()
    _fill(broker, 300, partitions=3)
    log = structlog.get_logger("breaks")

    async def process(msg: Message) -> None:
        n = int(msg.value or b"-1")
        log.info("proc", n=n)
        structlog.contextvars.bind_contextvars(span_id="0123456789abcdef")
        if n % 9 == 0:
            raise ValueError("fails")

    consumer = Consumer(
        processor=process,
        topics=["chat"],
        group_id="g",
        broker=broker,
        options=OPTIONS,
        retry_backoff=NO_JITTER,
        retries=1,
        dead_letter_topic="chat.dlq",
        concurrency=2,
    )
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as lines:
        async with open_supervisor([consumer.spec("c")]):
            await _wait(lambda: consumer.statistics().processed == 300)
    procs = [ln for ln in lines if ln["event"] == "proc"]
    assert len(procs) == 300 + 34, "34 failures, one retry each"
    assert [ln for ln in procs if ln.get("trace_id") != f"t-{ln['n']}"] == []
    proc_spans = [ln.get("span_id") for ln in procs]
    assert None not in proc_spans
    assert len(set(proc_spans)) == len(proc_spans)
    others = [ln for ln in lines if ln["event"] != "proc" and ln.get("offset") is not None]
    assert len(others) >= 34 * 2, "retry and dead-letter lines"
    for ln in others:
        assert ln.get("span_id") not in {*proc_spans, "0123456789abcdef"}, ln
