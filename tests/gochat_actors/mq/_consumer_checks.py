"""Consumer conformance: the same checks for a per-message consumer (``processor=``) and a
batch consumer (``batch_processor=``), on the in-memory broker and on Kafka (Tansu).

A :class:`Rig` says where the broker is; a :class:`Sink` is the processor of either
kind, transactional like a database batch: a call that raises leaves no trace, a call
that returns records every message it was given, in order.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from gochat_actors.mq import (
    Consumer,
    ConsumerOptions,
    Message,
    MQBackend,
    OutgoingRecord,
    TopicPartition,
)
from supervisors import Backoff, open_supervisor
from supervisors.testing import kill

Mode = Literal["message", "batch"]
MODES: tuple[Mode, ...] = ("message", "batch")

QUICK_RETRY = Backoff(initial=0.05, maximum=0.2, jitter=0.0)


@dataclass
class Rig:
    """A broker to run the checks on: its backend (to create topics, produce and read
    offsets), the consumer arguments that reach it, and how long a wait may take."""

    backend: MQBackend
    reach: dict[str, Any]
    options: ConsumerOptions
    wait: float = 60.0
    topics: list[str] = field(default_factory=list)

    def name(self, stem: str) -> str:
        name = f"conf-{stem}-{uuid.uuid4().hex[:10]}"
        self.topics.append(name)
        return name

    async def topic(self, stem: str, partitions: int) -> str:
        name = self.name(stem)
        with trio.fail_after(self.wait):
            await self.backend.create_topic(name, partitions)
        return name

    async def produce(self, topic: str, partitions: int, count: int) -> None:
        """``count`` messages round-robin over the partitions; the value is the index,
        each with its own trace ID."""
        records = [
            OutgoingRecord(
                topic, b"%d" % n, None, (("trace_id", b"t-%d" % n),), n + 1, n % partitions
            )
            for n in range(count)
        ]
        with trio.fail_after(self.wait):
            for start in range(0, count, 500):
                results = await self.backend.send_batch(records[start : start + 500])
                assert not [r for r in results if isinstance(r, Exception)], results

    def consumer(self, topic: str, sink: Sink, mode: Mode, **kw: Any) -> Consumer:
        kw.setdefault("group_id", self.name("group"))
        kw.setdefault("options", self.options)
        kw.setdefault("commit_interval", 0.2)
        kw.setdefault("retry_backoff", QUICK_RETRY)
        if mode == "message":
            kw.pop("max_batch", None)  # a per-message consumer refuses it (TypeError)
        return Consumer(topics=[topic], **sink.processing(mode), **self.reach, **kw)

    async def eventually(self, predicate: Callable[[], bool], what: str) -> None:
        with trio.move_on_after(self.wait):
            while True:  # polling is the point: the condition is on a broker
                if predicate():
                    return
                await trio.sleep(0.02)
        raise AssertionError(f"{what}: still not true after {self.wait:g}s")

    async def committed_reaches_the_end(self, group: str, topic: str, partitions: int) -> None:
        tps: Sequence[TopicPartition] = [TopicPartition(topic, p) for p in range(partitions)]
        with trio.move_on_after(self.wait):
            while True:  # the commit runs every commit_interval
                ends = await self.backend.end_offsets(tps)
                done = await self.backend.committed(group, tps)
                if {tp: off or 0 for tp, off in done.items()} == ends:
                    return
                await trio.sleep(0.05)
        raise AssertionError(f"committed {done} never reached the end offsets {ends}")


class Sink:
    """The processor of either kind. Each call takes ``delay`` seconds, then fails if a
    message it was given is poison, else records them all (nothing recorded by a call
    that failed or was cancelled: a transaction that rolled back)."""

    def __init__(self, poison: Collection[bytes] = (), delay: float = 0.001) -> None:
        self.poison = set(poison)
        self.delay = delay
        self.seen: dict[int, list[bytes]] = {}  # per partition, in processing order
        self.count = Counter[bytes]()
        self.interrupted: set[bytes] = set()  # given to a call that was cancelled
        self.calls: list[list[tuple[int, int]]] = []  # (partition, offset) per call

    def processing(self, mode: Mode) -> dict[str, Any]:
        if mode == "message":
            return {"processor": self.one}
        return {"batch_processor": self.many}

    async def one(self, msg: Message) -> None:
        await self.many([msg])

    async def many(self, msgs: list[Message]) -> None:
        self.calls.append([(m.partition, m.offset) for m in msgs])
        assert len({m.partition for m in msgs}) == 1, "one partition per call"
        offsets = [m.offset for m in msgs]
        assert offsets == sorted(offsets), "offset order"
        try:
            await trio.sleep(self.delay * len(msgs))  # work per message
        except trio.Cancelled:
            self.interrupted.update(m.value or b"" for m in msgs)
            raise
        bad = [m.value for m in msgs if m.value in self.poison]
        if bad:
            raise ValueError(f"poison: {bad[0]!r}")
        for m in msgs:
            self.seen.setdefault(m.partition, []).append(m.value or b"")
            self.count[m.value or b""] += 1

    def total(self) -> int:
        return sum(self.count.values())


def expected(count: int, partitions: int, skip: Collection[int] = ()) -> dict[int, list[bytes]]:
    """What each partition should have processed, in order."""
    out: dict[int, list[bytes]] = {}
    for n in range(count):
        if n not in skip:
            out.setdefault(n % partitions, []).append(b"%d" % n)
    return out


async def check_order_and_commit(rig: Rig, mode: Mode) -> None:
    """Every message once, in offset order per partition, concurrency across partitions;
    the committed offsets reach the end offsets."""
    topic = await rig.topic("order", 4)
    await rig.produce(topic, 4, 400)
    sink = Sink()
    consumer = rig.consumer(topic, sink, mode, concurrency=2, max_batch=50)
    async with open_supervisor([consumer.spec("c")]):
        await rig.eventually(lambda: sink.total() == 400, "400 messages processed")
        await rig.committed_reaches_the_end(consumer.group_id, topic, 4)
    assert sink.seen == expected(400, 4)
    assert set(sink.count.values()) == {1}
    sizes = [len(call) for call in sink.calls]
    if mode == "batch":
        assert max(sizes) > 1, "messages were batched"
        assert max(sizes) <= 50, "never more than max_batch"
    else:
        assert set(sizes) == {1}


async def check_poison_to_dead_letter(
    rig: Rig,
    mode: Mode,
    *,
    count: int = 40,
    partitions: int = 2,
    poison: Sequence[int] = (4, 17, 18, 33),
    retries: int = 1,
    max_batch: int = 500,
) -> None:
    """Each poison message is retried, then dead-lettered once, alone, with the DLQ
    headers; every other message is processed exactly once, in order per partition."""
    topic = await rig.topic("poison", partitions)
    dlq = await rig.topic("poison-dlq", 1)
    await rig.produce(topic, partitions, count)
    sink = Sink(poison={b"%d" % n for n in poison})
    consumer = rig.consumer(
        topic, sink, mode, retries=retries, dead_letter_topic=dlq, max_batch=max_batch
    )
    dead = Sink()
    reader = rig.consumer(dlq, dead, "message")
    async with open_supervisor([consumer.spec("c"), reader.spec("dlq-reader")]):
        await rig.eventually(lambda: consumer.statistics().processed == count, "all finished")
        await rig.eventually(lambda: dead.total() >= len(set(poison)), "dead letters read")
        await rig.committed_reaches_the_end(consumer.group_id, topic, partitions)
        await trio.sleep(0.3)  # no second dead letter comes
    assert sink.seen == expected(count, partitions, set(poison))
    assert set(sink.count.values()) <= {1}, "processed exactly once"
    assert sorted(dead.count) == sorted(b"%d" % n for n in set(poison))
    assert set(dead.count.values()) <= {1}, "dead-lettered once each"
    stats = consumer.statistics()
    assert stats.dead_lettered == len(set(poison))
    assert stats.retries == retries * len(set(poison))


async def check_dead_letter_headers(rig: Rig, mode: Mode) -> None:
    """A dead letter says where it came from, why, after how many attempts, and keeps
    its trace ID; a batch's culprit is tried alone before it goes."""
    topic = await rig.topic("headers", 1)
    dlq = await rig.topic("headers-dlq", 1)
    await rig.produce(topic, 1, 6)
    sink = Sink(poison={b"2"})
    consumer = rig.consumer(topic, sink, mode, retries=2, dead_letter_topic=dlq)
    letters: list[Message] = []

    async def read(msg: Message) -> None:
        letters.append(msg)

    reader = Consumer(
        topics=[dlq],
        group_id=rig.name("reader"),
        processor=read,
        options=rig.options,
        **rig.reach,
    )
    async with open_supervisor([reader.spec("dlq-reader")]) as sup:
        # the reader first: its group join is not in the way of the consumer's
        await sup.start_child(consumer.spec("c"))
        await rig.eventually(lambda: len(letters) == 1, "the dead letter read")
    [letter] = letters
    assert letter.value == b"2"
    headers = letter.headers
    assert headers["dlq.original_topic"] == topic.encode()
    assert headers["dlq.original_partition"] == b"0"
    assert headers["dlq.original_offset"] == b"2"
    assert headers["dlq.error_type"] == b"ValueError"
    assert headers["dlq.attempts"] == b"3"
    assert letter.trace_id == "t-2"
    alone = [call for call in sink.calls if (0, 2) in call]
    assert alone[-3:] == [[(0, 2)]] * 3, "the culprit's last three attempts: alone"
    assert sink.seen == {0: [b"0", b"1", b"3", b"4", b"5"]}


async def check_kills(rig: Rig, mode: Mode, *, path: str, kills: int, count: int) -> None:
    """Killed mid-work ``kills`` times (the consumer, or only its ``workers``): every
    message processed, the duplicates only among those given to a cancelled call, and
    the committed offsets reach the end offsets (never past what was processed)."""
    topic = await rig.topic("kills", 4)
    await rig.produce(topic, 4, count)
    sink = Sink(delay=0.002)
    consumer = rig.consumer(topic, sink, mode, concurrency=2, max_batch=20)
    quota = count // (kills * 2)
    async with open_supervisor([consumer.spec("c")], max_restarts=1000, max_seconds=1) as sup:
        for n in range(1, kills + 1):

            def kill_when_busy(n: int = n) -> bool:
                # kill() is False while the child is between incarnations: wait on
                if sink.total() < n * quota or not consumer.statistics().in_flight:
                    return False
                return kill(sup, path, RuntimeError(f"chaos {n}"))

            await rig.eventually(kill_when_busy, f"kill {n} mid-work")
        await rig.eventually(lambda: len(sink.count) == count, "every message processed")
        await rig.committed_reaches_the_end(consumer.group_id, topic, 4)
    assert set(sink.count) == {b"%d" % n for n in range(count)}
    duplicates = {value for value, times in sink.count.items() if times > 1}
    assert sink.interrupted, "the kills landed mid-work"
    assert duplicates <= sink.interrupted, sorted(duplicates - sink.interrupted)[:10]
    for partition, values in sink.seen.items():
        firsts = list(dict.fromkeys(values))
        assert firsts == expected(count, 4)[partition], "first processing in offset order"
