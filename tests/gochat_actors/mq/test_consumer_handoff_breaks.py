"""Adversarial tests of the consumer's poll hand-off (branch consumeperf, issue 24:
``Session.caught_up``, a channel of one batch, docs/mq.md's bound max_buffered +
2 x max_records + concurrency), on the in-memory broker under a mock clock. A strict
xfail names a defect found; a plain test is an attack the code held."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from gochat_actors.mq import ConsumerOptions, MemoryBroker, Message
from gochat_actors.mq._protocol import Batch
from gochat_actors.mq._session import Session
from supervisors import open_supervisor
from supervisors.testing import kill
from tests.gochat_actors.mq.test_consumer import (
    _batch,
    _session,
    committed,
    ends,
    fill,
    make,
    wait_for,
)

# -- the bound ---------------------------------------------------------------------------


class _Held:
    """Messages polled (handed to the session by the poll loop) and not finished: what
    docs/mq.md bounds by max_buffered + 2 x max_records + concurrency."""

    def __init__(self) -> None:
        self.polled = 0
        self.finished = 0
        self.peak = 0

    def note(self) -> None:
        self.peak = max(self.peak, self.polled - self.finished)


def _count_polls(monkeypatch: pytest.MonkeyPatch, held: _Held) -> None:
    # The memory poll loop builds a batch and calls deliver_nowait at once (then
    # deliver if that fails): from that call on, the batch is held.
    original = Session.deliver_nowait

    def deliver_nowait(self: Session, batch: Batch) -> bool:
        held.polled += sum(len(r) for r in batch.records.values())
        held.note()
        return original(self, batch)

    monkeypatch.setattr(Session, "deliver_nowait", deliver_nowait)


async def _held_run(
    held: _Held,
    count: int,
    partitions: int,
    concurrency: int,
    max_records: int,
    max_buffered: int,
    batch: bool,
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", count, partitions=partitions)
    options = ConsumerOptions(max_records=max_records, poll_timeout=0.5)

    async def process(msg: Message) -> None:
        held.note()
        await trio.sleep(0.01 * (1 + msg.offset % 3))
        held.finished += 1
        held.note()

    async def process_batch(msgs: list[Message]) -> None:
        held.note()
        await trio.sleep(0.01 * len(msgs))
        held.finished += len(msgs)
        held.note()

    kw: dict[str, object] = {
        "concurrency": concurrency,
        "max_buffered": max_buffered,
        "options": options,
    }
    if batch:
        consumer = make(broker, None, batch_processor=process_batch, max_batch=7, **kw)  # type: ignore[arg-type]
    else:
        consumer = make(broker, process, **kw)
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == count, timeout=10_000)


_BOUND_CASES = st.tuples(
    st.integers(1, 150),  # messages
    st.integers(1, 3),  # partitions
    st.integers(1, 4),  # concurrency
    st.integers(1, 30),  # max_records
    st.integers(1, 60),  # max_buffered
    st.booleans(),  # batch consumer
)


def _check_bound(case: tuple[int, int, int, int, int, bool], stated_only: bool) -> None:
    count, partitions, concurrency, max_records, max_buffered, batch = case
    if stated_only:
        max_buffered = max(max_buffered, max_records)
    held = _Held()
    with pytest.MonkeyPatch.context() as monkeypatch:
        _count_polls(monkeypatch, held)
        trio.run(
            _held_run,
            held,
            count,
            partitions,
            concurrency,
            max_records,
            max_buffered,
            batch,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
    bound = max(max_buffered, max_records) + 2 * max_records + (0 if batch else concurrency)
    assert held.peak <= bound, (held.peak, bound)


@settings(max_examples=40, deadline=None)
@given(case=_BOUND_CASES)
def test_the_bound_holds_when_max_buffered_is_at_least_a_fetch(
    case: tuple[int, int, int, int, int, bool],
) -> None:
    """Held: with max_buffered >= max_records, polled-and-unfinished messages never
    exceed max_buffered + 2 x max_records (+ concurrency for a per-message consumer)."""
    _check_bound(case, stated_only=True)


@settings(max_examples=60, deadline=None)
@given(case=_BOUND_CASES)
def test_the_stated_bound_holds_for_any_max_buffered(
    case: tuple[int, int, int, int, int, bool],
) -> None:
    """docs/mq.md stated max_buffered + 2 x max_records + concurrency for any
    max_buffered >= 1 (Consumer accepts any); a batch bigger than max_buffered is moved
    into empty queues whole, so the queues hold up to max_records, not max_buffered
    (failing example: 9 messages, concurrency 1, max_records 3, max_buffered 1: 9 held
    against a stated 8). Fixed in the docs: max(max_buffered, max_records) +
    2 x max_records + concurrency, which holds."""
    _check_bound(case, stated_only=False)


async def test_the_bound_with_a_fetch_bigger_than_max_buffered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The smallest case of the above, spelt out: max_buffered=1, max_records=10,
    concurrency=1, a slow processor: 9 queued + 1 in flight + 10 at the dispatcher + 10
    held by the poll = 30 > 1 + 2 x 10 + 1 = 22, and never more than 31."""
    held = _Held()
    _count_polls(monkeypatch, held)
    await _held_run(
        held, 100, partitions=1, concurrency=1, max_records=10, max_buffered=1, batch=False
    )
    assert 22 < held.peak <= 10 + 2 * 10 + 1


# -- wake-ups ----------------------------------------------------------------------------


async def test_with_one_worker_the_next_poll_waits_until_it_took_the_last_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/mq.md: the poll hands a batch over only once the workers took the last one
    up (no partition with messages waits for an idle worker). With one idle worker the
    dispatcher's unpark() takes it off the lot at once, so right after the dispatch
    caught_up() is true while the partition is still in the ready queue, untaken: the
    poll is woken there, and whether it parses the next batch before the worker ran
    is up to trio's scheduling order (the branch's own test passes only because with
    concurrency=2 a second idle worker stays on the lot)."""

    async def process(msg: Message) -> None:
        pass

    session = _session(process, concurrency=1)
    original = Session._taken_up
    at_dispatch: list[tuple[int, bool]] = []

    def taken_up(self: Session) -> None:
        at_dispatch.append((len(self._ready), self.caught_up()))
        original(self)

    monkeypatch.setattr(Session, "_taken_up", taken_up)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(session.run_workers)
            await trio.testing.wait_all_tasks_blocked()
            assert session.deliver_nowait(_batch(range(3)))
            nursery.start_soon(session.dispatch)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    ready, caught_up = at_dispatch[0]
    assert ready == 1, "the dispatcher's call: the partition is ready, not yet taken"
    assert not caught_up, "caught up while the partition waits for the (woken) worker"


async def test_a_poll_waiting_on_idle_workers_wakes_when_they_are_killed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The poll waits while a partition is ready and a worker idle (three workers, one
    partition: one unparked, two parked); the workers are killed before any ran, so the
    lot empties without a pop and caught_up() turns true. Held: a worker already
    unparked is rescheduled with its value, so it still pops (and wakes the poll)
    before the cancel reaches it at its next checkpoint."""
    seen: list[int] = []

    async def process(msg: Message) -> None:
        seen.append(msg.offset)

    session = _session(process, concurrency=3)
    workers = trio.CancelScope()
    original = Session._taken_up
    killed: list[bool] = []

    def taken_up(self: Session) -> None:
        original(self)
        if not killed:  # right after the dispatcher moved the first batch in
            killed.append(True)
            workers.cancel()

    monkeypatch.setattr(Session, "_taken_up", taken_up)

    async def run_workers(task_status: trio.TaskStatus[None]) -> None:
        with workers:
            await session.run_workers(task_status=task_status)

    delivered = trio.Event()

    async def deliver() -> None:
        await session.deliver(_batch(range(3, 6)))
        delivered.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_workers)
            await trio.testing.wait_all_tasks_blocked()
            assert session.deliver_nowait(_batch(range(3)))
            nursery.start_soon(deliver)
            nursery.start_soon(session.dispatch)
            await trio.testing.wait_all_tasks_blocked()
            assert killed
            assert session.caught_up(), "no idle worker, nothing queued"
            woke = delivered.is_set()
            nursery.cancel_scope.cancel()
    assert seen == [0, 1, 2], "the unparked worker still took its partition"
    assert woke, "caught_up() is true but the poll still waits (until workers restart)"


async def test_a_revoke_between_deliver_and_uptake_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Held: a second member joins while batches wait at the dispatcher (max_buffered
    full, slow processor) and leaves again: every message processed, the commits reach
    the end."""
    broker = MemoryBroker()
    fill(broker, "chat", 400, partitions=4)
    seen: set[int] = set()

    async def process(msg: Message) -> None:
        await trio.sleep(0.05)
        seen.add(int(msg.value or b"-1"))

    a = make(broker, process, concurrency=2, max_buffered=10, revoke_timeout=0.2)
    b = make(broker, process, concurrency=2, max_buffered=10, revoke_timeout=0.2)
    async with open_supervisor([a.spec("a")]) as sup:
        await wait_for(lambda: a.statistics().buffered >= 5)
        await sup.start_child(b.spec("b"))
        await wait_for(lambda: bool(b.statistics().assigned))
        await trio.sleep(1.0)
        await sup.terminate_child("b")
        await wait_for(lambda: len(seen) == 400, timeout=600)
        await trio.sleep(2)
        assert committed(broker) == ends(broker)


# -- throughput with slow processors -----------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    concurrency=st.integers(1, 6),
    partitions=st.integers(1, 6),
    max_records=st.integers(1, 40),
    max_buffered=st.integers(1, 80),
    batch=st.booleans(),
)
def test_slow_processors_keep_every_worker_busy(
    concurrency: int, partitions: int, max_records: int, max_buffered: int, batch: bool
) -> None:
    """Held: a processor taking 1 s (I/O): with P partitions and C workers the consumer
    finishes N messages in about N / min(C, P) seconds of mock time (the poll waiting for
    uptake never starves a worker that has a partition to take), in partition order."""
    per_partition = 12
    count = per_partition * partitions
    elapsed = trio.run(
        _slow_run,
        count,
        partitions,
        concurrency,
        max_records,
        max_buffered,
        batch,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    workers = min(concurrency, partitions)
    ideal = count / workers  # a batch call takes 1 s too, for one message at least
    # slack: the first polls; with max_buffered below concurrency the only queued
    # message may belong to a busy partition, so idle workers wait (as before this
    # branch: 4 workers, 5 partitions, max_buffered 1, max_records 2 took 16-20 s here,
    # 17-21 s on the merge base, against an ideal 15 s)
    assert elapsed <= ideal * 1.5 + 5, (elapsed, ideal)


async def _slow_run(
    count: int,
    partitions: int,
    concurrency: int,
    max_records: int,
    max_buffered: int,
    batch: bool,
) -> float:
    broker = MemoryBroker()
    fill(broker, "chat", count, partitions=partitions)
    options = ConsumerOptions(max_records=max_records, poll_timeout=0.5)
    order: dict[int, list[int]] = {}

    async def process(msg: Message) -> None:
        await trio.sleep(1.0)
        order.setdefault(msg.partition, []).append(msg.offset)

    async def process_batch(msgs: list[Message]) -> None:
        await trio.sleep(1.0)
        for msg in msgs:
            order.setdefault(msg.partition, []).append(msg.offset)

    kw: dict[str, object] = {
        "concurrency": concurrency,
        "max_buffered": max_buffered,
        "options": options,
    }
    handler: Callable[[Message], Awaitable[None]] = process
    if batch:
        consumer = make(broker, None, batch_processor=process_batch, **kw)  # type: ignore[arg-type]
    else:
        consumer = make(broker, handler, **kw)
    start = trio.current_time()
    async with open_supervisor([consumer.spec("c")]):
        await wait_for(lambda: consumer.statistics().processed == count, timeout=10_000)
        elapsed = trio.current_time() - start
    for p, offsets in order.items():
        assert offsets == sorted(offsets), p
        assert offsets == list(range(len(offsets))), p
    return elapsed


async def test_killing_the_workers_while_the_poll_waits_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Held: the workers child killed again and again while the poll waits for uptake
    (max_buffered smaller than a fetch, concurrency 1): everything processed once at
    least, in order per partition, commits at the end."""
    broker = MemoryBroker()
    fill(broker, "chat", 300, partitions=3)
    seen: dict[int, list[int]] = {}

    async def process(msg: Message) -> None:
        await trio.sleep(0.01)
        seen.setdefault(msg.partition, []).append(msg.offset)

    consumer = make(broker, process, concurrency=1, max_buffered=3)
    async with open_supervisor([consumer.spec("c")]) as sup:
        for _ in range(4):
            await trio.sleep(0.37)
            kill(sup, "c/workers")
        await wait_for(lambda: all(len(set(seen.get(p, []))) == 100 for p in range(3)), timeout=600)
        await trio.sleep(2)
        assert committed(broker, partitions=3) == ends(broker, partitions=3)
    for offsets in seen.values():
        # a message cancelled mid-call comes again: drop immediate repeats
        dedup = [o for i, o in enumerate(offsets) if i == 0 or offsets[i - 1] != o]
        assert dedup == list(range(100))


# -- no lost wake-up: a property over interleavings --------------------------------------

_ACTIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("deliver"),
            st.dictionaries(st.integers(0, 3), st.integers(0, 6), max_size=4),
        ),
        st.tuples(st.just("release"), st.integers(1, 5)),
        st.tuples(st.just("revoke"), st.frozensets(st.integers(0, 3), min_size=1)),
        st.tuples(st.just("kill"), st.just(0)),
        st.tuples(st.just("restart"), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(
    concurrency=st.integers(1, 4),
    max_buffered=st.integers(1, 12),
    batch=st.booleans(),
    actions=_ACTIONS,
)
def test_the_poll_never_waits_while_caught_up(
    concurrency: int, max_buffered: int, batch: bool, actions: list[tuple[str, object]]
) -> None:
    """Held: the poll loop (one task, as the backends'), batches of up to four partitions,
    processors that block until released, revokes (the new epoch's batches give the
    partitions back), the workers killed and restarted, in any order. Whenever every
    task is blocked, a poll waiting in deliver() means caught_up() is false (no lost
    wake-up); at the end, with workers running and everything released, the poll is
    not waiting and the queues are empty."""
    trio.run(_interleave, concurrency, max_buffered, batch, actions)


async def _interleave(
    concurrency: int, max_buffered: int, batch: bool, actions: list[tuple[str, object]]
) -> None:
    from aiokafka.structs import ConsumerRecord

    from gochat_actors.mq._consumer_config import ConsumerConfig, ConsumerTally
    from gochat_actors.mq._protocol import TopicPartition
    from tests.gochat_actors.mq.test_consumer import NO_JITTER

    gates: list[trio.Event] = []

    async def wait_gate() -> None:
        gate = trio.Event()
        gates.append(gate)
        await gate.wait()

    async def process(msg: Message) -> None:
        await wait_gate()

    async def process_batch(msgs: list[Message]) -> None:
        await wait_gate()

    config = ConsumerConfig(
        group_id="g",
        processor=process,
        concurrency=concurrency,
        retries=0,
        retry_backoff=NO_JITTER,
        dead_letter_topic=None,
        processing_timeout=None,
        commit_interval=1.0,
        revoke_timeout=10_000.0,
        max_buffered=max_buffered,
        batch_processor=process_batch if batch else None,
        max_batch=3,
    )
    session = Session(config, ConsumerTally(None), None, None, None)  # type: ignore[arg-type]
    send, receive = trio.open_memory_channel[Batch](100)
    waiting = False
    epoch = 0
    next_offset = [0, 0, 0, 0]
    workers: trio.CancelScope | None = None

    async def poll() -> None:
        nonlocal waiting
        async for b in receive:
            if not session.deliver_nowait(b):
                waiting = True
                await session.deliver(b)
                waiting = False

    async def start_workers(nursery: trio.Nursery) -> trio.CancelScope:
        scope = trio.CancelScope()

        async def body(task_status: trio.TaskStatus[None]) -> None:
            with scope:
                await session.run_workers(task_status=task_status)

        await nursery.start(body)
        return scope

    async def check() -> None:
        await trio.testing.wait_all_tasks_blocked()
        if waiting:
            assert not session.caught_up(), "the poll waits while caught up: lost wake-up"

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.dispatch)
            nursery.start_soon(poll)
            workers = await start_workers(nursery)
            for action, arg in actions:
                if action == "deliver":
                    records = {}
                    for p, n in arg.items():  # type: ignore[attr-defined]
                        tp = TopicPartition("chat", p)
                        start = next_offset[p]
                        next_offset[p] += n
                        records[tp] = [
                            ConsumerRecord("chat", p, o, 0, 0, None, b"v", None, -1, 1, ())
                            for o in range(start, start + n)
                        ]
                    highwater = {tp: next_offset[tp.partition] for tp in records}
                    await send.send(Batch(epoch, records, highwater))
                elif action == "release":
                    for gate in gates[: int(arg)]:  # type: ignore[call-overload]
                        gate.set()
                    del gates[: int(arg)]  # type: ignore[call-overload]
                elif action == "revoke":
                    epoch += 1
                    tps = frozenset(TopicPartition("chat", p) for p in arg)  # type: ignore[attr-defined]
                    nursery.start_soon(session.revoke, tps, epoch)
                elif action == "kill" and workers is not None:
                    workers.cancel()
                    workers = None
                elif action == "restart" and workers is None:
                    workers = await start_workers(nursery)
                await check()
            if workers is None:
                workers = await start_workers(nursery)
            for _ in range(10_000):
                await check()
                if not gates:
                    break
                for gate in gates:
                    gate.set()
                gates.clear()
            await check()
            assert not waiting, "everything released, the poll still waits"
            assert session.buffered == 0
            assert receive.statistics().current_buffer_used == 0
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_the_next_poll_waits_for_a_woken_worker_to_take_the_last_batch(
    concurrency: int,
) -> None:
    """The branch's test_the_next_poll_waits_until_the_workers_took_the_last_batch with
    one worker, and with more workers than partitions: the second batch is handed over
    after the worker took the first (it processes the first batch before), whatever
    order trio runs the woken tasks in."""
    events: list[object] = []

    async def process(msg: Message) -> None:
        events.append(msg.offset)

    session = _session(process, concurrency=concurrency)

    async def deliver(batch: Batch) -> None:
        await session.deliver(batch)
        events.append("second delivered")

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.dispatch)
            await nursery.start(session.run_workers)
            await trio.testing.wait_all_tasks_blocked()
            assert session.deliver_nowait(_batch(range(3)))
            nursery.start_soon(deliver, _batch(range(3, 6)))
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert events == [0, 1, 2, "second delivered", 3, 4, 5]


@settings(max_examples=30, deadline=None)
@given(
    concurrency=st.integers(1, 3),
    max_buffered=st.integers(1, 30),
    max_records=st.integers(1, 25),
    events=st.lists(
        st.tuples(st.floats(0.0, 1.0), st.sampled_from(["c", "c/workers", "down"])),
        max_size=4,
    ),
)
def test_kills_and_a_down_broker_while_the_poll_waits_at_least_once_in_order(
    concurrency: int,
    max_buffered: int,
    max_records: int,
    events: list[tuple[float, str]],
) -> None:
    """Held: the consumer or its workers killed, or the broker down for a second, at
    random times while the poll waits for uptake: every message processed, each
    partition's first sightings in offset order, duplicates only after a kill, the
    commits at the end."""
    trio.run(
        _kills_and_down,
        concurrency,
        max_buffered,
        max_records,
        events,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )


async def _kills_and_down(
    concurrency: int, max_buffered: int, max_records: int, events: list[tuple[float, str]]
) -> None:
    broker = MemoryBroker()
    fill(broker, "chat", 120, partitions=3)
    seen: dict[int, list[int]] = {}

    async def process(msg: Message) -> None:
        await trio.sleep(0.01)
        seen.setdefault(msg.partition, []).append(msg.offset)

    options = ConsumerOptions(max_records=max_records, poll_timeout=0.5)
    consumer = make(
        broker, process, concurrency=concurrency, max_buffered=max_buffered, options=options
    )
    async with open_supervisor([consumer.spec("c")]) as sup:
        for delay, what in events:
            await trio.sleep(delay)
            if what == "down":
                broker.set_down(True)
                await trio.sleep(1.0)
                broker.set_down(False)
            else:
                with contextlib.suppress(Exception):
                    kill(sup, what)
        await wait_for(lambda: all(len(set(seen.get(p, []))) == 40 for p in range(3)), timeout=3600)
        await wait_for(lambda: committed(broker, partitions=3) == [40, 40, 40], timeout=60)
    kills = sum(1 for _, what in events if what != "down")
    for offsets in seen.values():
        first: list[int] = []
        for o in offsets:
            if o not in first:
                first.append(o)
        assert first == list(range(40))
        if not kills:
            assert offsets == first, "no kill, no duplicate"
