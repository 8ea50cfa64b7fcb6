"""Adversarial tests of the batch consumer (``batch_processor=``), issue 24 point 3, on the
in-memory broker under ``autojump_clock``. A strict xfail names a defect found; a plain
test is an attack the code held."""

from __future__ import annotations

import contextlib

import pytest
import structlog
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from gochat_actors.mq import (
    Consumer,
    ConsumerOptions,
    MemoryBroker,
    Message,
    TopicPartition,
)
from supervisors import Backoff, ChildNotFound, open_supervisor
from supervisors.testing import kill
from tests.gochat_actors.mq.test_consumer import OPTIONS, committed, fill, wait_for

QUICK = Backoff(initial=0.1, maximum=1.0, jitter=0.0)


def batch_consumer(broker: MemoryBroker, batch_processor: object, **kw: object) -> Consumer:
    options: dict[str, object] = {
        "topics": ["chat"],
        "group_id": "g",
        "broker": broker,
        "options": OPTIONS,
        "retry_backoff": QUICK,
        **kw,
    }
    return Consumer(batch_processor=batch_processor, **options)  # type: ignore[arg-type]


# -- the stall watchdog against a bisection that finishes nothing --------------------------


async def test_a_hanging_poison_message_at_the_head_of_a_batch_is_dead_lettered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A processor that hangs on one message (a DB lock wait), bounded by
    ``processing_timeout``: the per-message consumer dead-letters it after its attempts.
    The batch consumer first makes 1 + log2(max_batch) calls that all time out before
    the message is alone, with nothing finished in between, so with max_batch=500 and a
    15 s timeout (150 s) the default 120 s stall watchdog restarted the consumer, which
    fetched the same batch and started the same bisection again: the partition never
    moved and the poison message was never dead-lettered (regression: a failed call
    that halves the search now counts as progress)."""
    broker = MemoryBroker()
    fill(broker, "chat", 500, partitions=1)
    calls = 0
    sizes: list[int] = []

    async def persist(msgs: list[Message]) -> None:
        nonlocal calls
        calls += 1
        sizes.append(len(msgs))
        if msgs[0].offset == 0:  # the poison message: its row lock never comes
            await trio.sleep_forever()

    consumer = batch_consumer(
        broker,
        persist,
        max_batch=500,
        processing_timeout=15.0,
        retries=0,
        dead_letter_topic="chat.dlq",
        max_buffered=500,
        options=ConsumerOptions(max_records=500, poll_timeout=0.5),
    )
    async with open_supervisor([consumer.spec("c")], max_restarts=1000, max_seconds=1):
        with trio.move_on_after(3600):
            await wait_for(lambda: consumer.statistics().processed == 500, timeout=3600)
        stats = consumer.statistics()
    assert [r.value for r in broker.records("chat.dlq")] == [b"0"], (
        f"after an hour: {stats.processed} processed, {stats.sessions} sessions, "
        f"{calls} calls, sizes {sizes[:12]}"
    )


async def test_a_hanging_poison_message_per_message_consumer_control(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The control for the test above: the same poison with ``processor=`` is
    dead-lettered (held; kept to show the batch consumer is the one that regresses)."""
    broker = MemoryBroker()
    fill(broker, "chat", 500, partitions=1)

    async def persist(msg: Message) -> None:
        if msg.offset == 0:
            await trio.sleep_forever()

    consumer = Consumer(
        topics=["chat"],
        group_id="g",
        broker=broker,
        options=OPTIONS,
        retry_backoff=QUICK,
        processor=persist,
        processing_timeout=15.0,
        retries=0,
        dead_letter_topic="chat.dlq",
        max_buffered=500,
    )
    async with open_supervisor([consumer.spec("c")], max_restarts=1000, max_seconds=1):
        await wait_for(lambda: consumer.statistics().processed == 500, timeout=3600)
    assert [r.value for r in broker.records("chat.dlq")] == [b"0"]


# -- max_buffered against batches in flight ------------------------------------------------


async def test_max_buffered_bounds_the_messages_fetched_and_not_finished(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """docs/mq.md: ``max_buffered`` "bounds the messages fetched and not yet finished";
    for a batch consumer the batches in flight count in it (regression: a batch taken
    left the count at once, so the queues filled up again behind it: 100
    fetched-and-unfinished with max_buffered=50)."""
    broker = MemoryBroker()
    fill(broker, "chat", 200, partitions=1)
    gate = trio.Event()
    in_flight = 0

    async def persist(msgs: list[Message]) -> None:
        nonlocal in_flight
        in_flight = len(msgs)
        await gate.wait()
        in_flight = 0

    consumer = batch_consumer(broker, persist, max_batch=50, max_buffered=50, concurrency=1)
    async with open_supervisor([consumer.spec("c")]):
        await trio.sleep(10)
        unfinished = consumer.statistics().buffered + in_flight
        gate.set()
    assert unfinished <= 50 + 1, f"{unfinished} fetched and not finished, max_buffered=50"


# -- trace context ----------------------------------------------------------------------


async def test_every_batch_call_lists_its_trace_ids_even_a_batch_of_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """docs/mq.md: "A call runs in a log context of its own: ... and ``trace_ids``, the
    list of its messages' trace IDs (a batch of one runs in its message's trace ...)".
    A log query on ``trace_ids`` misses every batch of one."""
    broker = MemoryBroker()
    fill(broker, "chat", 3, partitions=1)
    seen: list[tuple[object, list[str]]] = []

    async def persist(msgs: list[Message]) -> None:
        context = structlog.contextvars.get_contextvars()
        seen.append((context.get("trace_ids"), [m.trace_id for m in msgs]))
        if any(m.offset == 2 for m in msgs) and len(seen) < 10:
            raise ValueError("poison")

    consumer = batch_consumer(broker, persist, retries=1, dead_letter_topic="chat.dlq")
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 3)
    assert any(len(ids) == 1 for _, ids in seen)
    for listed, ids in seen:
        assert listed == ids, seen


# -- things that held ------------------------------------------------------------------


async def test_a_processor_that_mutates_or_keeps_its_list_changes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Held: each call gets a list of its own; clearing, reversing or keeping it does
    not change what the bisection gives next or what is committed."""
    broker = MemoryBroker()
    fill(broker, "chat", 40, partitions=1)
    kept: list[list[Message]] = []
    calls: list[list[int]] = []

    async def persist(msgs: list[Message]) -> None:
        calls.append([m.offset for m in msgs])
        kept.append(msgs)
        poisoned = any(m.offset == 13 for m in msgs)
        msgs.reverse()
        msgs.append(msgs[0])
        if poisoned:
            msgs.clear()
            raise ValueError("poison")

    consumer = batch_consumer(
        broker, persist, retries=0, dead_letter_topic="chat.dlq", max_batch=40
    )
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 40)
        await trio.sleep(2)
        assert committed(broker, partitions=1) == [40]
    for offsets in calls:
        assert offsets == sorted(offsets)
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    assert [r.value for r in broker.records("chat.dlq")] == [b"13"]


async def test_batches_never_mix_partitions_when_they_interleave(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Held: 8 partitions interleaved record by record, max_batch huge: every call is
    one partition, consecutive offsets."""
    broker = MemoryBroker()
    fill(broker, "chat", 800, partitions=8)
    calls: list[tuple[int, list[int]]] = []

    async def persist(msgs: list[Message]) -> None:
        calls.append((msgs[0].partition, [m.offset for m in msgs]))
        assert {m.partition for m in msgs} == {msgs[0].partition}
        await trio.sleep(0.01)

    consumer = batch_consumer(broker, persist, max_batch=10**9, concurrency=3)
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 800)
    by_partition: dict[int, list[int]] = {}
    for partition, offsets in calls:
        assert offsets, "never an empty batch"
        by_partition.setdefault(partition, []).extend(offsets)
    assert by_partition == {p: list(range(100)) for p in range(8)}


@pytest.mark.parametrize("bad", [0, -1, True, False, 1.0, "5", None])
def test_max_batch_must_be_a_positive_int(bad: object) -> None:
    """Held: 0, negatives, bools, floats, strings, None are refused (ValueError)."""

    async def many(msgs: list[Message]) -> None:
        pass

    with pytest.raises(ValueError, match="max_batch"):
        batch_consumer(MemoryBroker(), many, max_batch=bad)


def test_max_batch_given_with_a_per_message_processor_is_a_type_error() -> None:
    """``max_batch`` does nothing for ``processor=``: given, it is refused, naming both;
    left out, the per-message consumer is built as before."""

    async def one(msg: Message) -> None:
        pass

    for explicit in (500, 10):
        with pytest.raises(TypeError, match=r"max_batch=.*processor="):
            Consumer(topics=["chat"], group_id="g", processor=one, max_batch=explicit)
    Consumer(topics=["chat"], group_id="g", processor=one)
    Consumer(topics=["chat"], group_id="g", batch_processor=one, max_batch=500)  # type: ignore[arg-type]


async def test_max_batch_of_one_is_the_per_message_consumer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Held: max_batch=1, one poison: every call one message, the poison dead-lettered."""
    broker = MemoryBroker()
    fill(broker, "chat", 10, partitions=1)
    calls: list[list[int]] = []

    async def persist(msgs: list[Message]) -> None:
        calls.append([m.offset for m in msgs])
        if msgs[0].offset == 4:
            raise ValueError("poison")

    consumer = batch_consumer(broker, persist, max_batch=1, retries=2, dead_letter_topic="d")
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 10)
    assert calls == [[n] for n in range(5)] + [[4], [4]] + [[n] for n in range(5, 10)]
    assert [r.value for r in broker.records("d")] == [b"4"]


async def test_a_flaky_batch_is_split_once_and_nothing_is_processed_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Held: a processor that fails once on a whole batch (a deadlock), whatever is in
    it: the two halves succeed; each message is processed (returned) exactly once."""
    broker = MemoryBroker()
    fill(broker, "chat", 16, partitions=1)
    calls: list[list[int]] = []
    ok: list[int] = []

    async def persist(msgs: list[Message]) -> None:
        calls.append([m.offset for m in msgs])
        if len(calls) == 1:
            raise ValueError("deadlock")
        ok.extend(m.offset for m in msgs)

    consumer = batch_consumer(broker, persist, max_batch=16, dead_letter_topic="d")
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 16)
    assert calls == [list(range(16)), list(range(8)), list(range(8, 16))]
    assert ok == list(range(16))
    assert broker.records("d") == []


async def test_kill_while_a_dead_letter_send_is_in_flight_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Held: the dead-letter send is slow (applied 5 s late, as a broker that got the
    request); the workers are killed meanwhile. The culprit is dead-lettered again by the
    next incarnation (a duplicate in the DLQ: at-least-once), never lost; the commit
    never passes it before a dead letter is in."""
    broker = MemoryBroker()
    fill(broker, "chat", 10, partitions=1)
    broker.set_produce_delay(lambda records: 5.0 if records[0].topic == "d" else 0.0)
    sending = trio.Event()

    async def persist(msgs: list[Message]) -> None:
        if any(m.offset == 3 for m in msgs):
            if len(msgs) == 1:
                sending.set()
            raise ValueError("poison")

    consumer = batch_consumer(broker, persist, retries=0, dead_letter_topic="d")
    async with open_supervisor([consumer.spec("c")]) as sup:
        await sending.wait()
        await trio.sleep(1)  # the send is in flight now
        assert committed(broker, partitions=1)[0] in (None, 3)
        assert kill(sup, "c/workers", RuntimeError("chaos"))
        await wait_for(lambda: committed(broker, partitions=1) == [10])
    dead = [r.value for r in broker.records("d")]
    assert dead, "the culprit is dead-lettered"
    assert set(dead) == {b"3"}
    # One, not two: the memory broker's produce delay is shielded in the sender's own
    # task, so the kill lands only after the send is applied; a client that gives up on
    # a send the broker still applies (Kafka over the bridge) is not simulated.
    assert len(dead) == 1


# -- rebalances, failing commits, kills: the at-least-once property ----------------------


async def test_a_rebalance_mid_bisection_commits_the_finished_runs_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Held: a batch of 20 with a poison message at 15, each call 1 s; a second member
    joins mid-bisection and takes the partition after ``revoke_timeout``: the first
    member commits only the runs that finished, the second starts there; every good
    message is processed, the poison one dead-lettered, nothing committed unprocessed."""
    broker = MemoryBroker()
    fill(broker, "chat", 20, partitions=1)
    ok: list[int] = []

    async def persist(msgs: list[Message]) -> None:
        await trio.sleep(1.0)
        if any(m.offset == 15 for m in msgs):
            raise ValueError("poison")
        ok.extend(m.offset for m in msgs)

    first = batch_consumer(
        broker, persist, max_batch=20, retries=3, revoke_timeout=0.5, dead_letter_topic="d"
    )
    second = batch_consumer(broker, persist, max_batch=20, retries=3, dead_letter_topic="d")
    async with open_supervisor([first.spec("a")]) as sup:
        await wait_for(lambda: len(ok) >= 10)  # [0..9] done, [10..19] bisecting
        await sup.start_child(second.spec("b"))
        await wait_for(lambda: committed(broker, partitions=1) == [20], timeout=120)
    assert set(ok) == set(range(20)) - {15}
    assert sorted(dict.fromkeys(ok)) == list(dict.fromkeys(ok)), "first times in order"
    assert {r.value for r in broker.records("d")} == {b"15"}


async def test_a_commit_that_fails_after_the_batch_is_retried_not_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Held: the broker is down when the commit after a finished batch is due; the
    commit is retried at the next tick once it is back, and reaches the end."""
    broker = MemoryBroker()
    fill(broker, "chat", 30, partitions=1)
    done = trio.Event()

    async def persist(msgs: list[Message]) -> None:
        if msgs[-1].offset == 29:
            broker.set_down()
            done.set()

    consumer = batch_consumer(broker, persist, max_batch=10, commit_interval=0.5)
    async with open_supervisor([consumer.spec("c")]):
        await done.wait()
        await trio.sleep(3)
        assert committed(broker, partitions=1)[0] in (None, 10, 20)
        broker.set_down(False)
        await wait_for(lambda: committed(broker, partitions=1) == [30], timeout=120)


async def _flaky_and_killed(
    count: int,
    partitions: int,
    max_batch: int,
    flaky: frozenset[int],
    poison: frozenset[int],
    kills: tuple[tuple[float, str], ...],
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", count, partitions=partitions)
    seen_once: set[int] = set()
    ok: dict[int, list[int]] = {}
    cancelled: set[int] = set()

    async def persist(msgs: list[Message]) -> None:
        values = [int(m.value or b"") for m in msgs]
        try:
            await trio.sleep(0.01 * len(msgs))
        except trio.Cancelled:
            cancelled.update(values)
            raise
        first_time = {v for v in values if v in flaky and v not in seen_once}
        seen_once.update(values)
        if first_time or any(v in poison for v in values):
            raise ValueError("flaky or poison")  # rolled back: nothing kept
        for m, v in zip(msgs, values, strict=True):
            ok.setdefault(m.partition, []).append(v)

    consumer = batch_consumer(
        broker, persist, retries=1, dead_letter_topic="d", max_batch=max_batch, concurrency=2
    )
    async with open_supervisor([consumer.spec("c")], max_restarts=1000, max_seconds=1) as sup:
        for delay, path in kills:
            await trio.sleep(delay)
            with contextlib.suppress(ChildNotFound):  # c/workers while c restarts
                kill(sup, path, RuntimeError("chaos"))
        ends = [broker.end_offset(TopicPartition("chat", p)) for p in range(partitions)]
        await wait_for(
            lambda: [c or 0 for c in committed(broker, partitions=partitions)] == ends,
            timeout=3600,
        )
    good = {n for n in range(count) if n not in poison}
    done = {v for values in ok.values() for v in values}
    assert done == good, "every good message processed (at least once)"
    dead = [int(r.value or b"") for r in broker.records("d")]
    assert set(dead) == set(poison), "the poison ones dead-lettered, a flaky one never"
    for partition, values in ok.items():
        firsts = list(dict.fromkeys(values))
        assert firsts == sorted(firsts), f"partition {partition}: first times in order"
        duplicates = {v for v in values if values.count(v) > 1}
        assert duplicates <= cancelled, "processed twice only after a cancelled call"
    assert len(dead) - len(set(dead)) <= len(kills), "a duplicate dead letter per kill at most"


@settings(max_examples=60, deadline=None)
@given(
    data=st.integers(1, 60).flatmap(
        lambda count: st.tuples(
            st.just(count),
            st.integers(1, 3),
            st.integers(1, 25),
            st.frozensets(st.integers(0, count - 1), max_size=count),
            st.frozensets(st.integers(0, count - 1), max_size=3),
            st.lists(
                st.tuples(st.floats(0.0, 0.5), st.sampled_from(["c", "c/workers"])), max_size=4
            ).map(tuple),
        )
    )
)
def test_flaky_poison_and_kills_at_least_once_in_order(
    data: tuple[int, int, int, frozenset[int], frozenset[int], tuple[tuple[float, str], ...]],
) -> None:
    """Held (or the failing example): messages that fail on their first delivery only
    (retried, never dead-lettered), poison ones (dead-lettered), the consumer or its
    workers killed at random: every good message processed, in order the first time,
    duplicates only of cancelled calls, the commit reaches the end."""
    count, partitions, max_batch, flaky, poison, kills = data
    trio.run(
        _flaky_and_killed,
        count,
        partitions,
        max_batch,
        flaky - poison,
        poison,
        kills,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )


async def test_the_queues_refill_while_a_batch_is_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The queues full, the worker takes a batch: with room in ``max_buffered`` beyond
    the batch in flight (40 for batches of 20), the queues fill up meanwhile, so the
    next batch is waiting when this one returns (regression: the dispatcher waiting for
    room was woken only when the batch was done, so fetching and processing alternated
    instead of overlapping). The batch in flight counts in ``max_buffered``: the room
    is the 20 beyond it (see the test above)."""
    broker = MemoryBroker()
    fill(broker, "chat", 200, partitions=1)
    calls = 0
    gate = trio.Event()
    buffered_during_third: int | None = None

    async def persist(msgs: list[Message]) -> None:
        nonlocal calls, buffered_during_third
        calls += 1
        if calls == 3:
            await trio.sleep(5)
            buffered_during_third = consumer.statistics().buffered
            await gate.wait()

    consumer = batch_consumer(broker, persist, max_batch=20, max_buffered=40, concurrency=1)
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: buffered_during_third is not None)
        gate.set()
        await wait_for(lambda: consumer.statistics().processed == 200)
    assert buffered_during_third == 20, "the room beside the third batch is filled meanwhile"


async def test_each_finished_run_of_a_split_batch_gives_its_room_back_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A batch filling ``max_buffered`` (40) is split around a poison message at 70:
    the runs before it finish, and their room is refilled (polled batches of 10) while
    the culprit is still searched and retried: the dispatcher is woken per finished
    run, not when the whole batch is done."""
    broker = MemoryBroker()
    fill(broker, "chat", 200, partitions=1)
    calls: list[list[int]] = []
    buffered_at_retry: list[int] = []

    async def persist(msgs: list[Message]) -> None:
        calls.append([m.offset for m in msgs])
        await trio.sleep(1)  # each call takes a while: the dispatcher runs meanwhile
        if any(m.offset == 70 for m in msgs):
            if len(msgs) == 1:
                buffered_at_retry.append(consumer.statistics().buffered)
            raise ValueError("poison")

    consumer = batch_consumer(
        broker,
        persist,
        max_batch=40,
        max_buffered=40,
        concurrency=1,
        retries=1,
        options=ConsumerOptions(max_records=10, poll_timeout=0.5),
    )
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == 200)
    batch = next(offsets for offsets in calls if 70 in offsets)
    in_flight = batch[-1] - 70 + 1  # the culprit and the rest of its batch
    room = (40 - in_flight) // 10 * 10  # what whole polled batches of 10 fill
    assert room > 0, calls[:8]
    assert buffered_at_retry == [room, room], calls[:12]
