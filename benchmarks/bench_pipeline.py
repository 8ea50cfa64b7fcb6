"""The consume-and-persist pipeline of issue 24: 1 KB messages from Kafka persisted to
MariaDB, ours beside plain asyncio, against the same broker and server, in the same run.

Contenders (each in a fresh interpreter, rounds interleaved, order rotated):

- ``batch_ours``: a ``Consumer`` with ``batch_processor=`` (``max_batch=500``), each batch
  one ``db.transaction()`` with one ``execute(INSERT, rows)`` (an executemany: one
  statement on the wire);
- ``batch_raw``: plain asyncio, aiokafka ``getmany(max_records=500)``, per partition of a
  poll one SQLAlchemy ``engine.begin()`` with one ``execute(INSERT, rows)`` (the
  partitions of a poll concurrently, ``gather``: ours also persists partitions
  concurrently), then ``commit`` of the poll's offsets;
- ``message_ours``: a ``Consumer`` with ``processor=``, one ``db.transaction()`` (one
  INSERT) per message: what the batch consumer replaces (fewer messages: it is slow).

Each run reads a fresh topic of 4 partitions filled beforehand (untimed) into a fresh
table; the clock runs from the first message received to the commit of the end offsets
(ours: the consumer's commit, as in ``bench_mq``; raw: its last commit).

Run: ``.venv/bin/python -m benchmarks.bench_pipeline`` (needs Kafka at 127.0.0.1:9092 and
MariaDB at 127.0.0.1:3306, database ``test``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any

from benchmarks._report import Row, write_results
from benchmarks.bench_mq import (
    BROKERS,
    PARTITIONS,
    CommitWatch,
    _raw_delete,
    _raw_fill,
    _raw_topic,
    measure,
    quiet,
)

DB_URL = "mysql+aiomysql://root@127.0.0.1:3306/test"
CONTENDERS = ("batch_ours", "batch_raw", "message_ours")
MAX_BATCH = 500


def _insert(table: str) -> Any:
    from sqlalchemy import text

    return text(f"INSERT INTO {table} (part, off, body) VALUES (:part, :off, :body)")


def _table(table: str, *, drop: bool = False) -> None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test")
    try:
        with conn.cursor() as cur:
            if drop:
                cur.execute(f"DROP TABLE IF EXISTS {table}")
            else:
                cur.execute(
                    f"CREATE TABLE {table} (part INT NOT NULL, off BIGINT NOT NULL, "
                    "body BLOB NOT NULL, PRIMARY KEY (part, off))"
                )
        conn.commit()
    finally:
        conn.close()


def _count(table: str) -> int:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test")
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            row = cur.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()


# -- plain asyncio ----------------------------------------------------------------------


async def raw_batch(brokers: str, topic: str, table: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(DB_URL, pool_size=10)
    insert = _insert(table)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=brokers,
        group_id=f"bench-{uuid.uuid4().hex[:12]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=MAX_BATCH,
        session_timeout_ms=2000,
        heartbeat_interval_ms=200,
        rebalance_timeout_ms=1000,
    )

    async def persist(records: list[Any]) -> None:
        rows = [{"part": r.partition, "off": r.offset, "body": r.value} for r in records]
        async with engine.begin() as conn:
            await conn.execute(insert, rows)

    await consumer.start()
    try:
        got = 0
        start = 0.0
        while got < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=MAX_BATCH)
            if batch and not start:
                start = time.perf_counter()
            # the partitions of a poll persisted concurrently, as ours does (pool of 10)
            await asyncio.gather(*(persist(records) for records in batch.values()))
            got += sum(len(records) for records in batch.values())
            if batch:
                await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batch.items()})
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()
        await engine.dispose()


# -- ours on trio -------------------------------------------------------------------------


async def ours(kind: str, brokers: str, topic: str, table: str, n: int) -> float:
    import trio

    from gochat_actors import Bridge
    from gochat_actors.db import DBManager, DBSettings
    from gochat_actors.metrics import Metrics
    from gochat_actors.mq import Consumer, ConsumerOptions, Message, MQSettings
    from supervisors import ChildSpec, open_supervisor

    bridge, metrics = Bridge(), Metrics()
    db = DBManager(DBSettings.model_validate({"primary": DB_URL}), bridge=bridge, metrics=metrics)
    insert = _insert(table)
    done = trio.Event()
    count = 0
    first = 0.0
    committed = CommitWatch(n)

    def received() -> None:
        nonlocal first
        if not first:
            first = time.perf_counter()

    def persisted(k: int) -> None:
        nonlocal count
        count += k
        if count >= n:
            done.set()

    async def persist_batch(msgs: list[Message]) -> None:
        received()
        rows = [{"part": m.partition, "off": m.offset, "body": m.value} for m in msgs]
        async with db.transaction() as session:
            await session.execute(insert, rows)
        persisted(len(msgs))

    async def persist_one(msg: Message) -> None:
        received()
        async with db.transaction() as session:
            await session.execute(
                insert, {"part": msg.partition, "off": msg.offset, "body": msg.value}
            )
        persisted(1)

    processing: dict[str, Any] = (
        {"batch_processor": persist_batch, "max_batch": MAX_BATCH}
        if kind == "batch"
        else {"processor": persist_one}
    )
    consumer = Consumer(
        topics=[topic],
        group_id=f"bench-{uuid.uuid4().hex[:12]}",
        settings=MQSettings(brokers=brokers),
        bridge=bridge,
        metrics=metrics,
        options=ConsumerOptions(
            max_records=MAX_BATCH,
            session_timeout=2.0,
            heartbeat_interval=0.2,
            rebalance_timeout=1.0,
        ),
        **processing,
    )
    async with open_supervisor(
        [ChildSpec("bridge", bridge.run), db.spec(depends_on=("bridge",))]
    ) as sup:
        await sup.start_child(consumer.spec("consumer", depends_on=("bridge", "db")))
        await done.wait()
        await sup.terminate_child("consumer")  # commits the positions at once
    if not committed.done:
        raise RuntimeError("the consumer did not commit the end offsets")
    return n / (committed.done - first)


def one(name: str, brokers: str, n: int) -> float:
    """Measure one contender in this process (a fresh topic and table, dropped after)."""
    topic = f"gochat-bench-pipe-{uuid.uuid4().hex[:10]}"
    table = f"bench_pipe_{uuid.uuid4().hex[:10]}"
    _table(table)
    try:
        asyncio.run(_raw_topic(brokers, topic))
        asyncio.run(_raw_fill(brokers, topic, n))  # the same data for every side, untimed
        if name == "batch_raw":
            rate = asyncio.run(raw_batch(brokers, topic, table, n))
        else:
            import trio

            rate = trio.run(ours, name.removesuffix("_ours"), brokers, topic, table, n)
        stored = _count(table)
        if stored < n:
            raise RuntimeError(f"{name}: {stored} rows for {n} messages")
        return rate
    finally:
        asyncio.run(_raw_delete(brokers, topic))
        _table(table, drop=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--brokers", default=BROKERS)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--n-message", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", choices=CONTENDERS, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.one:
        quiet()
        print(json.dumps({"rate": one(opts.one, opts.brokers, opts.n)}))
        return
    n = 10_000 if opts.quick else opts.n
    n_message = 1_000 if opts.quick else opts.n_message
    rounds = 1 if opts.quick else opts.rounds
    sizes = {"batch_ours": n, "batch_raw": n, "message_ours": n_message}
    results = measure(
        opts.brokers,
        n,
        rounds,
        module="benchmarks.bench_pipeline",
        contenders=CONTENDERS,
        sizes=sizes,
    )
    med = {k: statistics.median(v) for k, v in results.items()}
    rows = [
        Row(
            "pipeline: Kafka -> MariaDB, 1 KB, one transaction per batch (msg/s)",
            med["batch_ours"],
            med["batch_raw"],
            "aiokafka getmany + SQLAlchemy executemany (asyncio)",
            True,
            ">= 1.0x",
            "msg/s",
            "Consumer(batch_processor=..., max_batch=500), each batch one db.transaction() "
            "with execute(INSERT, rows) vs getmany(max_records=500), per partition one "
            "engine.begin() with execute(INSERT, rows) (a poll's partitions gathered), "
            "commit per poll; all rates: ours "
            + ", ".join(f"{r:,.0f}" for r in results["batch_ours"])
            + "; peer "
            + ", ".join(f"{r:,.0f}" for r in results["batch_raw"]),
        ),
        Row(
            "pipeline: batch consumer / per-message consumer (msg/s)",
            med["batch_ours"],
            med["message_ours"],
            "ours, processor=, one transaction per message",
            True,
            "",
            "msg/s",
            f"the same pipeline with processor= and one db.transaction() per message "
            f"({n_message:,} messages a run); all rates: "
            + ", ".join(f"{r:,.0f}" for r in results["message_ours"]),
        ),
    ]
    command = "python -m benchmarks.bench_pipeline" + (" --quick" if opts.quick else "")
    write_results(
        "pipeline",
        command,
        rows,
        notes=(
            f"{n:,} messages of 1 KB per batch run ({n_message:,} for the per-message "
            f"one), a fresh topic of {PARTITIONS} partitions on Tansu ({opts.brokers}) "
            "filled beforehand (untimed), a fresh table (part, off, body BLOB) on MariaDB "
            "at 127.0.0.1:3306, both servers on the same 2-core machine, which other "
            "sessions were loading during the run (figures are noisy: one run only). "
            "Clock from the first message received to the commit of the end offsets. Median of "
            f"{rounds} rounds, each contender in a fresh interpreter, order rotated."
        ),
    )


if __name__ == "__main__":
    main()
