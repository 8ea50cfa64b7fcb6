"""The demo's chat backend, built only from the public API: a load generator, a
persisting consumer group, and a lock-guarded singleton compactor."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import trio

import supervisors
from supervisors import Backoff, ChildSpec

from .. import log
from .._exceptions import (
    CacheError,
    ComponentUnavailable,
    DBError,
    IdGenError,
    LockLost,
    LockNotAcquired,
    MQError,
)
from ..mq import ConsumerOptions, Message

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..service import Service

__all__ = ["ChatDemo", "Ledger"]

TOPIC = "chat.messages"
DEAD_LETTERS = "chat.messages.dlq"
GROUP = "persister"
PARTITIONS = 6
LOCK = "demo:compactor"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS demo_messages ("
    " id BIGINT PRIMARY KEY, room VARCHAR(64) NOT NULL, body VARCHAR(512) NOT NULL,"
    " trace_id VARCHAR(64) NOT NULL, sent_at_ms BIGINT NOT NULL,"
    " persisted_at_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS demo_compactions ("
    " token BIGINT PRIMARY KEY, instance VARCHAR(64) NOT NULL,"
    " started_ms BIGINT NOT NULL, ended_ms BIGINT NOT NULL, messages BIGINT NOT NULL)",
)

_log = log.get_logger("gochat_actors.demo")


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Ledger:
    """What this process did, kept outside the actors so restarts cannot lose it.

    ``sent`` holds each message id the broker acknowledged, with its send time; a
    message whose acknowledgement was lost to a crash is simply not counted as sent.
    """

    sent: dict[int, int] = field(default_factory=dict)
    generated: int = 0
    generated_ids: set[int] = field(default_factory=set)
    duplicate_ids: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    persisted: int = 0
    redelivered: int = 0
    compactions: list[tuple[int, float, float]] = field(default_factory=list)
    compactor_overlaps: int = 0
    compactors_active: int = 0
    restarts: int = 0
    sent_file: IO[str] | None = None

    def note_id(self, msg_id: int) -> None:
        self.generated += 1
        if msg_id in self.generated_ids:
            self.duplicate_ids += 1
        self.generated_ids.add(msg_id)

    def note_sent(self, msg_id: int, sent_at_ms: int) -> None:
        self.sent[msg_id] = sent_at_ms
        if self.sent_file is not None:
            self.sent_file.write(f"{msg_id}\n")
            self.sent_file.flush()

    def note_event(self, event: supervisors.Event) -> None:
        if isinstance(event, supervisors.ChildRestarting) and event.cause == event.path:
            self.restarts += 1


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p`` quantile (0..1) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _insert(session: Session, data: dict[str, Any], trace_id: str, now_ms: int) -> int:
    """One message, inserted once: a redelivery is a no-op (the id is the primary key)."""
    from sqlalchemy import text

    verb = "INSERT OR IGNORE" if session.get_bind().dialect.name == "sqlite" else "INSERT IGNORE"
    result = session.execute(
        text(
            f"{verb} INTO demo_messages (id, room, body, trace_id, sent_at_ms, persisted_at_ms)"
            " VALUES (:id, :room, :body, :trace_id, :sent_at_ms, :now)"
        ),
        {**data, "trace_id": trace_id, "now": now_ms},
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _create_schema(session: Session) -> None:
    from sqlalchemy import text

    for statement in _SCHEMA:
        session.execute(text(statement))


def _count(session: Session) -> int:
    from sqlalchemy import text

    return int(session.execute(text("SELECT COUNT(*) FROM demo_messages")).scalar_one())


def _record_compaction(
    session: Session, token: int, instance: str, started: int, ended: int, messages: int
) -> None:
    from sqlalchemy import text

    session.execute(
        text(
            "INSERT INTO demo_compactions (token, instance, started_ms, ended_ms, messages)"
            " VALUES (:token, :instance, :started, :ended, :messages)"
        ),
        {
            "token": token,
            "instance": instance,
            "started": started,
            "ended": ended,
            "messages": messages,
        },
    )


def _known_ids(session: Session, ids: list[int]) -> list[int]:
    from sqlalchemy import bindparam, text

    query = text("SELECT id FROM demo_messages WHERE id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    return [int(row[0]) for row in session.execute(query, {"ids": ids})]


class ChatDemo:
    """The demo's own children and bookkeeping, for one :class:`Service`.

    Example::

        async with open_service(settings) as service:
            demo = ChatDemo(service, rate=200)
            await demo.setup()
            for spec in demo.specs():
                await service.add_child(spec)
    """

    def __init__(
        self,
        service: Service,
        *,
        rate: float = 200.0,
        rooms: int = 8,
        instance: str = "demo",
        seed: int | None = None,
        sent_file: Path | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 messages per second, got {rate!r}")
        if rooms < 1:
            raise ValueError(f"rooms must be >= 1, got {rooms!r}")
        self.service = service
        self.rate = rate
        self.rooms = rooms
        self.instance = instance
        self.rng = random.Random(seed)
        self.ledger = Ledger()
        if sent_file is not None:
            self.ledger.sent_file = sent_file.open("a", encoding="utf-8")
        self.sending = True

    async def setup(self) -> None:
        """Create the tables and the topic (both idempotent)."""
        await self.service.db.with_transaction(_create_schema, retries=5)
        await self.service.producer.create_topic(TOPIC, partitions=PARTITIONS)
        await self.service.producer.create_topic(DEAD_LETTERS, partitions=1)

    def specs(self) -> list[ChildSpec]:
        """The demo's children: the persister, the compactor, the load generator."""
        persister = self.service.consumer_spec(
            "persister",
            topics=[TOPIC],
            group_id=GROUP,
            processor=self.persist,
            concurrency=8,
            retries=5,
            retry_backoff=Backoff(initial=0.05, maximum=1.0, jitter=0.2),
            dead_letter_topic=DEAD_LETTERS,
            # A member restarted by the chaos rejoins in about a second, not the 3-5 s a
            # 30 s rebalance timeout costs on the test broker: processing here takes
            # milliseconds, so a short revoke budget and rebalance timeout are enough.
            revoke_timeout=0.5,
            options=ConsumerOptions(
                session_timeout=3.0, heartbeat_interval=0.3, rebalance_timeout=1.0
            ),
        )
        return [
            persister,
            ChildSpec("compactor", self.compactor, shutdown=3.0),
            ChildSpec("loadgen", self.loadgen, shutdown=3.0, stall_timeout=30.0),
        ]

    # ---------------------------------------------------------------- load generator

    async def _next_id(self) -> int:
        ids = self.service.ids
        while True:
            try:
                return ids.next_id()
            except IdGenError:
                with trio.move_on_after(1.0):
                    await ids.wait_ready()

    async def _send_one(self) -> None:
        room = f"room-{self.rng.randrange(self.rooms)}"
        msg_id = await self._next_id()
        self.ledger.note_id(msg_id)
        sent_at = _now_ms()
        with log.trace_context():
            body = json.dumps(
                {
                    "id": msg_id,
                    "room": room,
                    "body": f"hello from {self.instance}",
                    "sent_at_ms": sent_at,
                }
            ).encode()
            while True:  # the same id until the broker acknowledges it
                try:
                    await self.service.producer.send(TOPIC, body, key=room.encode())
                    break
                except (MQError, ComponentUnavailable) as exc:
                    _log.warning("send failed; retrying", error=type(exc).__name__, id=msg_id)
                    await trio.sleep(0.2)
        self.ledger.note_sent(msg_id, sent_at)
        supervisors.progress()

    async def loadgen(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Sends chat messages at ``rate`` a second, over a few concurrent senders."""
        senders = 4
        task_status.started()

        async def sender(offset: int) -> None:
            interval = senders / self.rate
            next_at = trio.current_time() + offset * interval / senders
            while self.sending:
                await trio.sleep_until(next_at)
                next_at = max(next_at + interval, trio.current_time() - 1.0)
                await self._send_one()

        async with trio.open_nursery() as nursery:
            for i in range(senders):
                nursery.start_soon(sender, i)
        await trio.sleep_forever()  # stopped sending: idle until the demo stops

    # ---------------------------------------------------------------- persister

    async def persist(self, msg: Message) -> None:
        """Store one message (at most once per id) and update its room's last message."""
        if msg.value is None:
            raise ValueError("empty message")
        data = json.loads(msg.value)
        sent_at_ms = int(data["sent_at_ms"])
        row: dict[str, Any] = {
            "id": int(data["id"]),
            "room": str(data["room"]),
            "body": str(data["body"])[:512],
            "sent_at_ms": sent_at_ms,
        }
        now = _now_ms()
        inserted = await self.service.db.with_transaction(
            _insert, row, msg.trace_id, now, retries=5
        )
        if inserted:
            self.ledger.persisted += 1
            self.ledger.latencies_ms.append(max(0, now - sent_at_ms))
        else:
            self.ledger.redelivered += 1
        try:  # the cache is a cache: a failure here must not fail the message
            await self.service.cache.set(f"demo:room:{row['room']}:last", msg.value, ttl=3600.0)
        except (CacheError, ComponentUnavailable) as exc:
            _log.info("room cache not updated", error=type(exc).__name__)

    # ---------------------------------------------------------------- compactor

    async def compactor(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """A singleton job: at most one compactor runs at a time across every instance."""
        task_status.started()
        while True:
            try:
                async with self.service.locks.hold(LOCK, ttl=6.0, wait=2.0) as lease:
                    await self._compact(lease.token)
            except LockNotAcquired:
                pass
            except LockLost:
                _log.warning("compactor lost its lock; its work was cancelled")
            except (DBError, CacheError, ComponentUnavailable) as exc:
                _log.info("compaction skipped", error=type(exc).__name__)
            await trio.sleep(1.0 + self.rng.random())

    async def _compact(self, token: int) -> None:
        ledger = self.ledger
        ledger.compactors_active += 1
        if ledger.compactors_active > 1:
            ledger.compactor_overlaps += 1
        started = trio.current_time()
        started_ms = _now_ms()
        try:
            async with self.service.db.reader() as session:
                count = await session.run_sync(_count)
            await trio.sleep(0.5)  # the "work"
            await self.service.db.with_transaction(
                _record_compaction, token, self.instance, started_ms, _now_ms(), count
            )
            ledger.compactions.append((token, started, trio.current_time()))
        finally:
            ledger.compactors_active -= 1

    # ---------------------------------------------------------------- the end

    async def unpersisted(self) -> list[int]:
        """Ids this process sent that are not in the database (yet)."""
        missing: list[int] = []
        ids = list(self.ledger.sent)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            async with self.service.db.reader(consistent=True) as session:
                found = set(await session.run_sync(_known_ids, chunk))
            missing.extend(i for i in chunk if i not in found)
        return missing

    def close(self) -> None:
        if self.ledger.sent_file is not None:
            self.ledger.sent_file.close()
            self.ledger.sent_file = None
