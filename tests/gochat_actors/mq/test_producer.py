"""``Producer`` on the in-memory broker, under ``autojump_clock``: batching, headers,
timeouts, restarts, flush on shutdown, readiness, metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import trio
import trio.testing

from gochat_actors import Bridge, MessageTooLarge, MQError, MQTimeout, MQUnavailable
from gochat_actors.log import trace_context
from gochat_actors.metrics import Metrics
from gochat_actors.mq import (
    MemoryBroker,
    MQSettings,
    OutgoingRecord,
    Producer,
    RecordMetadata,
    TopicPartition,
)
from supervisors import Backoff, ChildStartError, open_supervisor
from supervisors.testing import kill


class CountingBroker(MemoryBroker):
    """Remembers the size of every batch it was sent."""

    def __init__(self) -> None:
        super().__init__(default_partitions=2)
        self.batches: list[int] = []

    def append(
        self, records: Sequence[OutgoingRecord], *, max_message_bytes: float = float("inf")
    ) -> list[RecordMetadata | Exception]:
        self.batches.append(len(records))
        return super().append(records, max_message_bytes=max_message_bytes)


async def test_send_returns_metadata_and_stores_headers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    broker.create_topic("chat", 4)
    producer = Producer(MQSettings(), broker=broker)
    async with open_supervisor([producer.spec()]):
        with trace_context("trace-1"):
            meta = await producer.send("chat", b"hi", key=b"room:42", headers={"k": b"v"})
    assert isinstance(meta, RecordMetadata)
    assert meta.topic == "chat"
    [stored] = broker.records("chat", meta.partition)
    assert stored.offset == meta.offset == 0
    assert (stored.key, stored.value) == (b"room:42", b"hi")
    headers = dict(stored.headers)
    assert headers["k"] == b"v"
    assert headers["trace_id"] == b"trace-1"
    assert headers["timestamp"].isdigit()


async def test_concurrent_sends_are_batched(autojump_clock: trio.testing.MockClock) -> None:
    broker = CountingBroker()
    producer = Producer(MQSettings(), broker=broker, max_in_flight=1, max_batch=50)
    async with open_supervisor([producer.spec()]), trio.open_nursery() as nursery:
        for n in range(200):
            nursery.start_soon(producer.send, "chat", b"%d" % n)
    assert sum(broker.batches) == 200
    assert max(broker.batches) == 50
    assert len(broker.batches) < 10
    assert sorted(int(r.value or b"") for p in (0, 1) for r in broker.records("chat", p)) == list(
        range(200)
    )


async def test_sequential_sends_keep_their_order(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker)
    async with open_supervisor([producer.spec()]):
        for n in range(20):
            await producer.send("chat", b"%d" % n, key=b"same")
    [values] = [[r.value for r in broker.records("chat", 0)]]
    assert values == [b"%d" % n for n in range(20)]


async def test_too_large_is_refused_before_sending(autojump_clock: trio.testing.MockClock) -> None:
    broker = CountingBroker()
    producer = Producer(MQSettings(), broker=broker, max_message_bytes=100)
    async with open_supervisor([producer.spec()]):
        with pytest.raises(MessageTooLarge, match="over the 100 bytes limit"):
            await producer.send("chat", b"x" * 101)
    assert broker.batches == []


async def test_bad_arguments_are_typed_errors() -> None:
    producer = Producer(MQSettings(), broker=MemoryBroker())
    with pytest.raises(TypeError, match="value must be bytes"):
        await producer.send("chat", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"brokers = '127\.0\.0\.1:9092' needs bridge="):
        Producer(MQSettings(brokers="127.0.0.1:9092"))
    with pytest.raises(ValueError, match="only with brokers = memory://"):
        Producer(MQSettings(brokers="127.0.0.1:9092"), bridge=Bridge(), broker=MemoryBroker())
    with pytest.raises(TypeError, match="MQSettings"):
        Producer({"brokers": "memory://"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_batch"):
        Producer(MQSettings(), max_batch=0)


async def test_send_waits_for_the_actor_then_gives_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    producer = Producer(MQSettings(), broker=MemoryBroker())
    start = trio.current_time()
    with pytest.raises(MQUnavailable, match="not running"):
        await producer.send("chat", b"x", timeout=3.0)
    assert trio.current_time() - start == pytest.approx(3.0)


async def test_sends_during_a_restart_go_to_the_next_incarnation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker)
    async with open_supervisor(
        [producer.spec()], backoff=Backoff(initial=1.0, maximum=1.0, jitter=0)
    ) as sup:
        kill(sup, "producer", RuntimeError("chaos"))
        await trio.sleep(0.1)  # the old incarnation is gone; the next starts at t=1.0
        start = trio.current_time()
        meta = await producer.send("chat", b"after", timeout=5.0)
        assert trio.current_time() - start == pytest.approx(0.9, abs=0.05)
        assert meta.offset == 0
        assert sup.which_children()[0].restarts == 1


async def test_a_hung_broker_times_sends_out(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker, timeout=2.0)
    async with open_supervisor([producer.spec()]):
        broker.pause()
        start = trio.current_time()
        with pytest.raises(MQTimeout, match="may still be delivered"):
            await producer.send("chat", b"x")
        assert trio.current_time() - start == pytest.approx(2.0)
        with pytest.raises(MQTimeout):
            await producer.send("chat", b"y", timeout=0.5)
        broker.resume()
        await producer.send("chat", b"z")
    assert sorted(r.value or b"" for r in broker.records("chat")) == [b"x", b"y", b"z"]


async def test_mixed_timeouts_each_expire_on_time(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker)
    timed_out: dict[str, float] = {}

    async def send(name: str, timeout: float) -> None:
        start = trio.current_time()
        with pytest.raises(MQTimeout):
            await producer.send("chat", name.encode(), timeout=timeout)
        timed_out[name] = trio.current_time() - start

    async with open_supervisor([producer.spec()]):
        broker.pause()
        async with trio.open_nursery() as nursery:
            for name, timeout in (("long", 5.0), ("longer", 7.0), ("short", 1.0), ("mid", 3.0)):
                nursery.start_soon(send, name, timeout)
                await trio.testing.wait_all_tasks_blocked()
        broker.resume()
    assert timed_out == pytest.approx({"long": 5.0, "longer": 7.0, "short": 1.0, "mid": 3.0})


async def test_finished_sends_are_not_kept_until_their_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    producer = Producer(MQSettings(), broker=MemoryBroker(), timeout=3600.0)
    async with open_supervisor([producer.spec()]):
        async with trio.open_nursery() as nursery:
            for n in range(3000):
                nursery.start_soon(producer.send, "chat", b"%d" % n)
        for n in range(3000):
            await producer.send("chat", b"%d" % n, timeout=60.0 + n % 7)
        sender = producer._slot.value
        assert sender is not None
        kept = len(sender._deadlines.fifo) + len(sender._deadlines.heap)
        assert kept <= 2, kept  # not 6,000 sends held for an hour


async def test_a_down_broker_fails_sends(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker)
    async with open_supervisor([producer.spec()]):
        broker.set_down()
        with pytest.raises(MQUnavailable, match="down"):
            await producer.send("chat", b"x")
        broker.set_down(False)
        await producer.send("chat", b"y")


async def test_pending_sends_wait_for_space(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker, max_pending=3, max_in_flight=1)
    results: list[object] = []

    async def send(n: int) -> None:
        try:
            results.append(await producer.send("chat", b"%d" % n, timeout=5.0))
        except MQError as exc:
            results.append(exc)

    async with open_supervisor([producer.spec()]):
        broker.pause()
        async with trio.open_nursery() as nursery:
            for n in range(6):
                nursery.start_soon(send, n)
            await trio.sleep(1.0)
            sender = producer._slot.value
            assert sender is not None
            assert len(sender._queue) == 3, "bounded: the others wait for space"
            broker.resume()
    assert all(isinstance(r, RecordMetadata) for r in results)


async def test_no_room_by_the_deadline_is_a_timeout_and_never_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker, max_pending=2, max_in_flight=1)
    errors: dict[int, str] = {}

    async def send(n: int) -> None:
        with pytest.raises(MQTimeout) as caught:
            await producer.send("chat", b"%d" % n, timeout=1.0)
        errors[n] = str(caught.value)

    async with open_supervisor([producer.spec()]):
        broker.pause()
        async with trio.open_nursery() as nursery:
            for n in range(6):  # 1 in flight, 2 queued, 3 waiting for room
                nursery.start_soon(send, n)
                await trio.testing.wait_all_tasks_blocked()
            sender = producer._slot.value
            assert sender is not None
            assert sender._queued == 2
        broker.resume()
        await producer.send("chat", b"last")
    assert all("may still be delivered" in errors[n] for n in range(3))
    assert all("not sent" in errors[n] for n in (3, 4, 5))
    sent = sorted(r.value or b"" for r in broker.records("chat"))
    assert sent == [b"0", b"1", b"2", b"last"]


async def test_shutdown_flushes_what_is_queued(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker, max_in_flight=1, max_batch=2)
    results: list[object] = []

    async def send(n: int) -> None:
        try:
            results.append(await producer.send("chat", b"%d" % n, timeout=30.0))
        except MQError as exc:
            results.append(exc)

    async with (
        trio.open_nursery() as outer,
        open_supervisor([producer.spec(shutdown=5.0)]) as sup,
    ):
        broker.pause()
        for n in range(6):
            outer.start_soon(send, n)
        await trio.sleep(0.5)
        outer.start_soon(sup.shutdown)
        await trio.sleep(1.0)
        broker.resume()  # within the 5 s budget: everything queued goes out
    assert sorted(int(r.value or b"") for r in broker.records("chat")) == list(range(6))
    assert len(results) == 6
    assert all(isinstance(r, RecordMetadata) for r in results)


async def test_shutdown_gives_up_at_the_budget(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker)
    results: list[object] = []

    async def send() -> None:
        try:
            results.append(await producer.send("chat", b"x", timeout=60.0))
        except MQError as exc:
            results.append(exc)

    async with (
        trio.open_nursery() as outer,
        open_supervisor([producer.spec(shutdown=2.0)]) as sup,
    ):
        broker.pause()
        outer.start_soon(send)
        await trio.sleep(0.5)
        start = trio.current_time()
        report = await sup.shutdown()
    assert 1.7 <= trio.current_time() - start < 2.0, "flushes until a tenth before the budget"
    assert not report.overstayed
    [result] = results
    assert isinstance(result, MQUnavailable)
    broker.resume()


async def test_not_ready_while_the_broker_hangs(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker, probe_interval=1.0, timeout=1.0)
    async with open_supervisor([producer.spec()]) as sup:
        assert sup.health().ready
        broker.pause()
        await trio.sleep(3.0)
        health = sup.health()
        assert not health.ready
        assert any("broker unreachable" in reason for reason in health.reasons)
        broker.resume()
        await trio.sleep(2.0)
        assert sup.health().ready


async def test_start_fails_when_the_broker_is_down(autojump_clock: trio.testing.MockClock) -> None:
    broker = MemoryBroker()
    broker.set_down()
    producer = Producer(MQSettings(), broker=broker)
    with pytest.raises(ChildStartError, match="does not answer"):
        async with open_supervisor([producer.spec()]):
            pass


async def test_admin_helpers_and_metrics(autojump_clock: trio.testing.MockClock) -> None:
    metrics = Metrics()
    producer = Producer(MQSettings(), broker=MemoryBroker(), metrics=metrics)
    async with open_supervisor([producer.spec()]):
        await producer.create_topic("chat", 3)
        for n in range(5):
            await producer.send("chat", b"x", partition=n % 3)
        tps = [TopicPartition("chat", p) for p in range(3)]
        assert await producer.end_offsets(tps) == dict(zip(tps, [2, 2, 1], strict=True))
        assert await producer.committed("nobody", tps) == dict.fromkeys(tps)
        with pytest.raises(ValueError, match="partitions"):
            await producer.create_topic("chat", 0)
    assert metrics.mq_messages_produced.labels(topic="chat")._value.get() == 5
    assert "stopped" in repr(producer)


async def test_send_many(autojump_clock: trio.testing.MockClock) -> None:
    broker = CountingBroker()
    broker.create_topic("chat", 3)
    producer = Producer(MQSettings(), broker=broker, max_batch=100)
    async with open_supervisor([producer.spec()]):
        values = [b"%d" % n for n in range(250)]
        keys = [b"room:%d" % (n % 7) for n in range(250)]
        with trace_context("bulk-1"):
            metas = await producer.send_many("chat", values, keys=keys, headers={"h": b"1"})
        assert await producer.send_many("chat", []) == []
        with pytest.raises(ValueError, match="keys has 1 items, values 2"):
            await producer.send_many("chat", [b"a", b"b"], keys=[b"k"])
        with pytest.raises(MessageTooLarge):
            await producer.send_many("chat", [b"ok", b"x" * 2_000_000])
        broker.set_down()
        with pytest.raises(MQUnavailable):
            await producer.send_many("chat", [b"a", b"b"])
    assert max(broker.batches) == 100, "split into batches of max_batch"
    by_key: dict[bytes, set[int]] = {}
    for meta, value, key in zip(metas, values, keys, strict=True):
        stored = broker.records("chat", meta.partition)[meta.offset]
        assert stored.value == value
        assert dict(stored.headers)["trace_id"] == b"bulk-1"
        assert dict(stored.headers)["h"] == b"1"
        by_key.setdefault(key, set()).add(meta.partition)
    assert all(len(parts) == 1 for parts in by_key.values())


# -- issue 27: send_many order and errors, restarts while waiting, shutdown timeouts ----


def _first_batch_late(seconds: float) -> Callable[[Sequence[OutgoingRecord]], float]:
    """A produce delay: the broker applies the first batch it gets ``seconds`` late."""
    seen: list[int] = []

    def delay(records: Sequence[OutgoingRecord]) -> float:
        seen.append(len(records))
        return seconds if len(seen) == 1 else 0.0

    return delay


async def test_send_many_lands_in_input_order_past_max_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """More values than max_batch: one call's values land in input order, even when
    the broker applies an earlier batch late."""
    broker = MemoryBroker()
    broker.create_topic("chat", 2)
    broker.set_produce_delay(_first_batch_late(0.5))
    producer = Producer(MQSettings(), broker=broker, max_batch=10, max_in_flight=4)
    async with open_supervisor([producer.spec()]):
        values = [b"%d" % n for n in range(35)]
        keys = [b"room:%d" % (n % 3) for n in range(35)]
        metas = await producer.send_many("chat", values, keys=keys)
    for partition in (0, 1):
        stored = [int(r.value or b"") for r in broker.records("chat", partition)]
        assert stored == sorted(stored), f"partition {partition} out of order: {stored}"
    assert [m.offset for m in metas if m.partition == 0] == sorted(
        m.offset for m in metas if m.partition == 0
    )


async def test_send_many_timeout_is_one_mqtimeout_saying_what_was_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A chunk not acknowledged in time: MQTimeout (not an ExceptionGroup), raised
    once the chunk in flight is done, saying how many were acknowledged and sent."""
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker, max_batch=10, max_pending=10, max_in_flight=1)
    async with open_supervisor([producer.spec()]):
        await producer.send("chat", b"warm-up")
        broker.set_produce_delay(_first_batch_late(5.0))
        with pytest.raises(MQTimeout) as caught:
            await producer.send_many("chat", [b"%d" % n for n in range(30)], timeout=2.0)
        text = str(caught.value)
        assert "0 of 30 acknowledged" in text
        assert "20 not sent" in text
        await trio.sleep(5.0)
    stored = [r.value for r in broker.records("chat")]
    assert stored == [b"warm-up"] + [b"%d" % n for n in range(10)], "late; the rest never sent"


async def test_send_waiting_for_room_waits_for_the_next_incarnation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A send waiting for queue room when the producer restarts goes to the next
    incarnation (up to its timeout) instead of failing at once."""
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker, max_pending=1, max_in_flight=1)
    outcome: list[object] = []

    async def send(value: bytes) -> None:
        try:
            outcome.append(await producer.send("chat", value, timeout=60.0))
        except MQError as exc:
            outcome.append(exc)

    async with open_supervisor(
        [producer.spec(shutdown=0.5)], backoff=Backoff(initial=1.0, maximum=1.0, jitter=0)
    ) as sup, trio.open_nursery() as nursery:
        broker.pause()
        for value in (b"in-flight", b"queued", b"waiting"):
            nursery.start_soon(send, value)
            await trio.testing.wait_all_tasks_blocked()
        kill(sup, "producer", RuntimeError("chaos"))
        await trio.sleep(0.6)  # the killed incarnation gave up its two sends at its budget
        assert len(outcome) == 2, outcome
        broker.resume()
    assert isinstance(outcome[-1], RecordMetadata), outcome
    assert [r.value for r in broker.records("chat")][-1] == b"waiting"


async def test_send_timeout_is_enforced_during_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A send in flight when the producer stops still times out at its own deadline."""
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker)
    ended: list[float] = []

    async def send() -> None:
        with pytest.raises(MQTimeout):
            await producer.send("chat", b"x", timeout=1.0)
        ended.append(trio.current_time())

    async with (
        trio.open_nursery() as outer,
        open_supervisor([producer.spec(shutdown=10.0)]) as sup,
    ):
        broker.pause()
        start = trio.current_time()
        outer.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        outer.start_soon(sup.shutdown)
        await trio.sleep(5.0)
        assert ended, "the send's 1 s timeout passed during the shutdown"
        assert ended[0] - start == pytest.approx(1.0)
        broker.resume()


async def test_spans_off_a_send_makes_no_span_call(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 25, "zero cost" with spans off: send_span, NO_SPAN.__enter__ and __exit__
    # were three Python calls a send (~2% of a send's instructions, scripts/instr_mq.py)
    from gochat_actors import _tracing
    from gochat_actors.mq import _producer

    def no_span_call(*args: object, **kwargs: object) -> None:
        raise AssertionError("send_span called while spans are off")

    monkeypatch.setattr(_tracing.SPANS, "on", None)
    monkeypatch.setattr(_tracing.SPANS, "checked", True)
    monkeypatch.setattr(_producer, "send_span", no_span_call)
    broker = MemoryBroker()
    broker.create_topic("chat", 1)
    producer = Producer(MQSettings(), broker=broker)
    async with open_supervisor([producer.spec()]):
        meta = await producer.send("chat", b"hi")
    [stored] = broker.records("chat", meta.partition)
    assert dict(stored.headers)["traceparent"].startswith(b"00-")
