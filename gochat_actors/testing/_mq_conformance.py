"""The conformance suite every :class:`~gochat_actors.mq.MQBackend` passes (Kafka through
aiokafka, the in-memory broker).

Each check is ``async def check_x(backend) -> None`` and raises ``AssertionError``; each
creates its own topics and groups (``conformance-<check>-<random>``), so checks may share
a broker. Group checks use :data:`FAST_GROUPS` (short session and rebalance timeouts:
a real Kafka needs ``group.min.session.timeout.ms`` <= 2000 for them).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio

from .._exceptions import MessageTooLarge, MQError
from ..mq import (
    Batch,
    ConsumerOptions,
    GroupConsumer,
    MQBackend,
    OutgoingRecord,
    RawRecord,
    RecordMetadata,
    TopicPartition,
    murmur2_partition,
)

__all__ = ["FAST_GROUPS", "MQ_CHECKS", "check_mq_backend"]

FAST_GROUPS = ConsumerOptions(
    max_records=100,
    poll_timeout=0.2,
    session_timeout=2.0,
    heartbeat_interval=0.2,
    rebalance_timeout=1.0,
)
"""Consumer options of the group checks: joins in about a second on a Kafka-wire broker."""

_WAIT = 30.0  # a group join plus a rebalance on a busy machine


def _name(check: str) -> str:
    return f"conformance-{check}-{uuid.uuid4().hex[:10]}"


async def _eventually(predicate: Callable[[], bool], what: str, *, timeout: float = _WAIT) -> None:
    with trio.move_on_after(timeout):
        while True:  # polling is the point: the condition is on a server
            if predicate():
                return
            await trio.sleep(0.02)
    raise AssertionError(f"{what}: still not true after {timeout:g}s")


async def _produce(backend: MQBackend, records: Sequence[OutgoingRecord]) -> list[RecordMetadata]:
    with trio.fail_after(_WAIT):
        results = await backend.send_batch(records)
    assert len(results) == len(records), "send_batch returns one result per record"
    for record, result in zip(records, results, strict=True):
        assert isinstance(result, RecordMetadata), f"{record.topic}: {result!r}"
    return [r for r in results if isinstance(r, RecordMetadata)]


def _record(topic: str, n: int, **kw: object) -> OutgoingRecord:
    return OutgoingRecord(
        topic,
        b"value-%d" % n,
        kw.get("key", b"key-%d" % n),  # type: ignore[arg-type]
        (("n", str(n).encode()), ("trace_id", b"trace-%d" % n)),
        1_700_000_000_000 + n,
        kw.get("partition"),  # type: ignore[arg-type]
    )


class Recorder:
    """A :class:`~gochat_actors.mq.GroupHandler` that keeps what it is given.

    ``records`` per partition in delivery order, ``revoked`` the revocations, and
    ``commit_on_revoke`` decides what a revocation commits (default: everything
    received so far).
    """

    def __init__(self) -> None:
        self.records: dict[TopicPartition, list[RawRecord]] = {}
        self.highwater: dict[TopicPartition, int] = {}
        self.revoked: list[frozenset[TopicPartition]] = []
        self.batches = 0
        self.epoch = 0

    def deliver_nowait(self, batch: Batch) -> bool:
        return False  # the suite exercises the waiting path

    async def deliver(self, batch: Batch) -> None:
        await trio.lowlevel.checkpoint()
        if batch.epoch < self.epoch:
            return
        self.batches += 1
        self.highwater.update({TopicPartition(*tp): m for tp, m in batch.highwater.items()})
        for tp, records in batch.records.items():
            self.records.setdefault(TopicPartition(*tp), []).extend(records)

    async def revoke(
        self, partitions: frozenset[TopicPartition], epoch: int
    ) -> dict[TopicPartition, int]:
        await trio.lowlevel.checkpoint()
        self.epoch = epoch
        self.revoked.append(frozenset(TopicPartition(*tp) for tp in partitions))
        return {
            TopicPartition(*tp): self.records[tp][-1].offset + 1
            for tp in partitions
            if self.records.get(tp)
        }

    def count(self) -> int:
        return sum(len(v) for v in self.records.values())

    def partitions(self) -> set[TopicPartition]:
        return {tp for tp, recs in self.records.items() if recs}


@asynccontextmanager
async def running(
    backend: MQBackend, group_id: str, topics: Sequence[str], handler: Recorder
) -> AsyncIterator[GroupConsumer]:
    """Open a group consumer and run it (in the background) for the block."""
    with trio.fail_after(_WAIT):
        consumer = await backend.open_consumer(group_id, topics, FAST_GROUPS)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer.run, handler)
            yield consumer
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(_WAIT):
            await consumer.aclose()


# -- producing --------------------------------------------------------------------------


async def check_ping(backend: MQBackend) -> None:
    """The broker answers a ping; once the backend is closed, a ping raises ``MQError``
    (at once, not after a hang): a ping that cannot fail proves nothing. Closing is
    idempotent, so the backend's owner may close it again."""
    with trio.fail_after(_WAIT):
        await backend.ping()
        await backend.aclose()
        try:
            await backend.ping()
        except MQError:
            pass
        else:
            raise AssertionError("ping on a closed backend returned: it can never fail")
        await backend.aclose()


async def check_create_topic(backend: MQBackend) -> None:
    """A created topic has its partitions; creating it again changes nothing; an unknown
    topic has none."""
    topic = _name("create")
    with trio.fail_after(_WAIT):
        assert await backend.partitions(_name("unknown")) == 0
        await backend.create_topic(topic, 3)
        assert await backend.partitions(topic) == 3
        await backend.create_topic(topic, 5)
        assert await backend.partitions(topic) == 3


async def check_send_batch_in_order(backend: MQBackend) -> None:
    """Results come in record order; offsets are contiguous per partition from 0; the
    record's timestamp is kept."""
    topic = _name("order")
    with trio.fail_after(_WAIT):
        await backend.create_topic(topic, 2)
    records = [_record(topic, n, partition=n % 2) for n in range(10)]
    metas = await _produce(backend, records)
    assert [m.partition for m in metas] == [n % 2 for n in range(10)]
    assert [m.offset for m in metas] == [n // 2 for n in range(10)]
    assert all(m.topic == topic for m in metas)
    assert metas[3].timestamp == records[3].timestamp_ms / 1000
    more = await _produce(backend, [_record(topic, 10, partition=1)])
    assert more[0].offset == 5


async def check_keys_pick_partitions(backend: MQBackend) -> None:
    """A key always lands on the same partition: murmur2(key) % partitions, as Kafka."""
    topic = _name("keys")
    with trio.fail_after(_WAIT):
        await backend.create_topic(topic, 4)
    keys = [b"room:%d" % (n % 5) for n in range(25)]
    metas = await _produce(backend, [_record(topic, n, key=k) for n, k in enumerate(keys)])
    for key, meta in zip(keys, metas, strict=True):
        assert meta.partition == murmur2_partition(key, 4), (key, meta)


async def check_too_large_and_bad_partition(backend: MQBackend) -> None:
    """A record over 1 MiB gets MessageTooLarge, one for a missing partition an MQError;
    the other records of the batch are stored."""
    topic = _name("large")
    with trio.fail_after(_WAIT):
        await backend.create_topic(topic, 2)
    big = OutgoingRecord(topic, b"x" * (1_048_576 + 1), None, (), 1, 0)
    records = [_record(topic, 0, partition=0), big, _record(topic, 1, partition=7)]
    with trio.fail_after(_WAIT):
        ok, too_large, bad = await backend.send_batch(records)
    assert isinstance(ok, RecordMetadata), ok
    assert ok.offset == 0
    assert isinstance(too_large, MessageTooLarge), too_large
    assert isinstance(bad, MQError), bad
    assert not isinstance(bad, MessageTooLarge), bad
    with trio.fail_after(_WAIT):
        ends = await backend.end_offsets([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    assert ends == {TopicPartition(topic, 0): 1, TopicPartition(topic, 1): 0}


async def check_end_offsets(backend: MQBackend) -> None:
    """End offsets count what each partition holds (batches of many records included)."""
    topic = _name("ends")
    with trio.fail_after(_WAIT):
        await backend.create_topic(topic, 3)
    await _produce(backend, [_record(topic, n, partition=n % 2) for n in range(9)])
    tps = [TopicPartition(topic, p) for p in range(3)]
    with trio.fail_after(_WAIT):
        assert await backend.end_offsets(tps) == dict(zip(tps, [5, 4, 0], strict=True))


# -- consuming ----------------------------------------------------------------------------


async def check_consume_round_trip(backend: MQBackend) -> None:
    """A group member gets every record with its key, value, headers and timestamp, in
    offset order per partition, and the high watermarks of its partitions."""
    topic = _name("roundtrip")
    with trio.fail_after(_WAIT):
        await backend.create_topic(topic, 3)
    records = [_record(topic, n) for n in range(30)]
    metas = await _produce(backend, records)
    recorder = Recorder()
    async with running(backend, _name("group"), [topic], recorder):
        await _eventually(lambda: recorder.count() >= 30, "all 30 records consumed")
        await _eventually(lambda: len(recorder.highwater) == 3, "high watermarks known")
    assert recorder.count() == 30
    sent = {(m.partition, m.offset): r for m, r in zip(metas, records, strict=True)}
    for tp, got in recorder.records.items():
        offsets = [r.offset for r in got]
        assert offsets == sorted(offsets) == list(range(len(got))), (tp, offsets)
        for r in got:
            original = sent[(r.partition, r.offset)]
            assert r.topic == topic
            assert (r.key, r.value, r.timestamp) == (
                original.key,
                original.value,
                original.timestamp_ms,
            )
            assert [tuple(h) for h in r.headers] == list(original.headers)
        assert recorder.highwater[tp] == len(got)


async def check_commit_and_resume(backend: MQBackend) -> None:
    """Committed offsets are what ``committed`` reads back, and where the next member of
    the group starts; a group that never committed reads None."""
    topic = _name("resume")
    group = _name("group")
    tp = TopicPartition(topic, 0)
    with trio.fail_after(_WAIT):
        await backend.create_topic(topic, 1)
        assert await backend.committed(group, [tp]) == {tp: None}
    await _produce(backend, [_record(topic, n, partition=0) for n in range(10)])
    first = Recorder()
    async with running(backend, group, [topic], first) as consumer:
        await _eventually(lambda: first.count() >= 10, "first member read 10 records")
        with trio.fail_after(_WAIT):
            await consumer.commit({tp: 6})
    with trio.fail_after(_WAIT):
        assert await backend.committed(group, [tp]) == {tp: 6}
    second = Recorder()
    async with running(backend, group, [topic], second):
        await _eventually(lambda: second.count() >= 4, "second member read from offset 6")
        await trio.sleep(0.3)
    assert [r.offset for r in second.records[tp]] == [6, 7, 8, 9]


def _read_from(recorder: Recorder, offset: int) -> set[TopicPartition]:
    return {tp for tp, recs in recorder.records.items() if any(r.offset >= offset for r in recs)}


async def check_group_split_and_takeover(backend: MQBackend) -> None:
    """Two members split the partitions; when one leaves, the other is asked to revoke,
    what it returns is committed, and it then gets every partition."""
    topic = _name("split")
    group = _name("group")
    tps = {TopicPartition(topic, p) for p in range(4)}
    with trio.fail_after(_WAIT):
        await backend.create_topic(topic, 4)
    await _produce(backend, [_record(topic, n, partition=n % 4) for n in range(8)])
    a, b = Recorder(), Recorder()
    async with running(backend, group, [topic], a):
        await _eventually(lambda: a.partitions() == tps, "the first member reads everything")
        async with running(backend, group, [topic], b):
            await _eventually(lambda: bool(a.revoked), "the first member is asked to revoke")
            assert a.revoked[0] == tps, a.revoked
            await _produce(backend, [_record(topic, n, partition=n % 4) for n in range(8, 16)])
            await _eventually(
                lambda: _read_from(a, 2) | _read_from(b, 2) == tps,
                "the two members read the new records",
            )
            assert _read_from(a, 2), "each member has a share"
            assert _read_from(b, 2), "each member has a share"
            assert not _read_from(a, 2) & _read_from(b, 2), "no partition is read twice"
            assert all(r.offset >= 2 for recs in b.records.values() for r in recs), (
                "the second member starts where the first committed on revoke"
            )
            before = len(a.revoked)
        await _eventually(lambda: len(a.revoked) > before, "a revoke when the second leaves")
        await _produce(backend, [_record(topic, n, partition=n % 4) for n in range(16, 20)])
        await _eventually(
            lambda: _read_from(a, 4) == tps, "the remaining member reads every partition"
        )
    with trio.fail_after(_WAIT):
        committed = await backend.committed(group, sorted(tps))
    assert all(off is not None and off >= 2 for off in committed.values()), committed


MQ_CHECKS: list[Callable[[MQBackend], Awaitable[None]]] = [
    check_ping,
    check_create_topic,
    check_send_batch_in_order,
    check_keys_pick_partitions,
    check_too_large_and_bad_partition,
    check_end_offsets,
    check_consume_round_trip,
    check_commit_and_resume,
    check_group_split_and_takeover,
]
"""Every check, in a sensible order (cheap ones first)."""


async def check_mq_backend(
    make_backend: Callable[[], AbstractAsyncContextManager[MQBackend]],
) -> None:
    """Run every check of :data:`MQ_CHECKS`, each on a fresh ``make_backend()``.

    Example::

        async def test_my_backend():
            await check_mq_backend(lambda: open_my_backend("..."))
    """
    for check in MQ_CHECKS:
        async with make_backend() as backend:
            await check(backend)
