"""End-to-end latency of the consume-and-persist pipeline (issue 24) at a steady rate:
ours (``batch_processor=``, a transaction per batch) beside the same on plain asyncio
(aiokafka ``getmany`` + SQLAlchemy executemany), as in ``bench_pipeline``.

A producer in a process of its own (plain aiokafka, the same for both sides) sends 1 KB
messages at ``--rate`` (default 19,000/s: half the batch pipeline's peak measured by
``bench_pipeline`` here), each stamped with its send time (wall clock: one machine). The
consumer, already in its group, persists them; a message's latency is from its stamp to
the return of the COMMIT of the transaction holding it. The first 5% are left out (warm
up). Each side in a fresh interpreter, rounds interleaved; medians of the p50 and p99.

Run: ``.venv/bin/python -m benchmarks.bench_pipeline_latency`` (Kafka at 127.0.0.1:9092,
MariaDB at 127.0.0.1:3306).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from benchmarks._report import Row, write_results
from benchmarks.bench_mq import BROKERS, PARTITIONS, _raw_delete, _raw_producer, _raw_topic, quiet
from benchmarks.bench_pipeline import DB_URL, MAX_BATCH, _count, _insert, _table

CONTENDERS = ("latency_ours", "latency_raw")


def _stamped() -> bytes:
    return (b"%.6f " % time.time()).ljust(1024, b"x")


def _sent(value: bytes) -> float:
    return float(value[:18].split(b" ", 1)[0])


async def produce(brokers: str, topic: str, rate: int, n: int) -> None:
    """``n`` messages at ``rate`` per second, round-robin over the partitions."""
    producer = _raw_producer(brokers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"0 warm-up".ljust(1024, b"x"), partition=0)
        futures = []
        start = time.perf_counter()
        sent = 0
        while sent < n:
            due = min(n, int((time.perf_counter() - start) * rate))
            while sent < due:
                futures.append(await producer.send(topic, _stamped(), partition=sent % PARTITIONS))
                sent += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _producer_command(brokers: str, topic: str, rate: int, n: int) -> list[str]:
    return [
        *(sys.executable, "-m", "benchmarks.bench_pipeline_latency", "--produce", topic),
        *("--rate", str(rate), "--n", str(n), "--brokers", brokers),
    ]


def _percentiles(latencies: list[float], n: int) -> dict[str, float]:
    kept = sorted(latencies[n // 20 :])
    return {
        "p50": kept[len(kept) // 2],
        "p99": kept[min(len(kept) - 1, int(len(kept) * 0.99))],
    }


async def raw(brokers: str, topic: str, table: str, rate: int, n: int) -> dict[str, float]:
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
    latencies: list[float] = []

    async def persist(records: list[Any]) -> None:
        rows = [{"part": r.partition, "off": r.offset, "body": r.value} for r in records]
        async with engine.begin() as conn:
            await conn.execute(insert, rows)
        now = time.time()
        latencies.extend(now - _sent(r.value) for r in records if r.offset or r.partition)

    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        producer = await asyncio.create_subprocess_exec(*_producer_command(brokers, topic, rate, n))
        while len(latencies) < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=MAX_BATCH)
            await asyncio.gather(*(persist(records) for records in batch.values()))
            if batch:
                await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batch.items()})
        await producer.wait()
        return _percentiles(latencies, n)
    finally:
        await consumer.stop()
        await engine.dispose()


async def ours(brokers: str, topic: str, table: str, rate: int, n: int) -> dict[str, float]:
    import trio

    from gochat_actors import Bridge
    from gochat_actors.db import DBManager, DBSettings
    from gochat_actors.metrics import Metrics
    from gochat_actors.mq import Consumer, ConsumerOptions, Message, MQSettings
    from supervisors import ChildSpec, open_supervisor

    bridge, metrics = Bridge(), Metrics()
    db = DBManager(DBSettings.model_validate({"primary": DB_URL}), bridge=bridge, metrics=metrics)
    insert = _insert(table)
    latencies: list[float] = []
    done = trio.Event()

    async def persist(msgs: list[Message]) -> None:
        rows = [{"part": m.partition, "off": m.offset, "body": m.value} for m in msgs]
        async with db.transaction() as session:
            await session.execute(insert, rows)
        now = time.time()
        latencies.extend(now - _sent(m.value or b"") for m in msgs if m.offset or m.partition)
        if len(latencies) >= n:
            done.set()

    consumer = Consumer(
        topics=[topic],
        group_id=f"bench-{uuid.uuid4().hex[:12]}",
        batch_processor=persist,
        max_batch=MAX_BATCH,
        settings=MQSettings(brokers=brokers),
        bridge=bridge,
        metrics=metrics,
        options=ConsumerOptions(
            max_records=MAX_BATCH,
            session_timeout=2.0,
            heartbeat_interval=0.2,
            rebalance_timeout=1.0,
        ),
    )
    async with open_supervisor(
        [ChildSpec("bridge", bridge.run), db.spec(depends_on=("bridge",))]
    ) as sup:
        await sup.start_child(consumer.spec("consumer", depends_on=("bridge", "db")))
        while not consumer.statistics().assigned:  # noqa: ASYNC110 - no event for it
            await trio.sleep(0.05)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.run_process, _producer_command(brokers, topic, rate, n))
            await done.wait()
        await sup.terminate_child("consumer")
    return _percentiles(latencies, n)


def one(name: str, brokers: str, rate: int, n: int) -> dict[str, float]:
    topic = f"gochat-bench-lat-{uuid.uuid4().hex[:10]}"
    table = f"bench_lat_{uuid.uuid4().hex[:10]}"
    _table(table)
    try:
        asyncio.run(_raw_topic(brokers, topic))
        if name == "latency_raw":
            result = asyncio.run(raw(brokers, topic, table, rate, n))
        else:
            import trio

            result = trio.run(ours, brokers, topic, table, rate, n)
        if _count(table) < n:
            raise RuntimeError(f"{name}: fewer rows than the {n} messages")
        return result
    finally:
        asyncio.run(_raw_delete(brokers, topic))
        _table(table, drop=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", default=BROKERS)
    parser.add_argument("--rate", type=int, default=19_000)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--produce", metavar="TOPIC", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.produce:
        asyncio.run(produce(opts.brokers, opts.produce, opts.rate, opts.n))
        return
    if opts.one:
        quiet()
        print(json.dumps(one(opts.one, opts.brokers, opts.rate, opts.n)))
        return
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CONTENDERS}
    for round_ in range(opts.rounds):
        names = CONTENDERS if round_ % 2 == 0 else CONTENDERS[::-1]
        for name in names:
            out = subprocess.run(
                [
                    *(sys.executable, "-m", "benchmarks.bench_pipeline_latency", "--one", name),
                    *("--rate", str(opts.rate), "--n", str(opts.n), "--brokers", opts.brokers),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            got = json.loads(out.stdout.strip().splitlines()[-1])
            results[name].append(got)
            print(
                f"  round {round_ + 1} {name:13s} p50 {got['p50'] * 1000:8.1f} ms"
                f"  p99 {got['p99'] * 1000:8.1f} ms",
                flush=True,
            )

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name]) * 1000

    def all_of(name: str, key: str) -> str:
        return ", ".join(f"{r[key] * 1000:.1f}" for r in results[name])

    rows = [
        Row(
            f"pipeline end-to-end latency {key} at {opts.rate:,} msg/s (ms)",
            med("latency_ours", key),
            med("latency_raw", key),
            "aiokafka getmany + SQLAlchemy executemany (asyncio)",
            False,
            "<= 1.2x",
            "ms",
            f"send stamp to the COMMIT of its batch's transaction; all {key}s: ours "
            f"{all_of('latency_ours', key)}; peer {all_of('latency_raw', key)}",
        )
        for key in ("p50", "p99")
    ]
    write_results(
        "pipeline-latency",
        f"python -m benchmarks.bench_pipeline_latency --rate {opts.rate} --n {opts.n}",
        rows,
        notes=(
            f"{opts.n:,} messages of 1 KB at {opts.rate:,} msg/s (half the batch "
            "pipeline's peak in bench_pipeline) from a producer process of its own, into "
            f"a fresh topic of {PARTITIONS} partitions on Tansu and a fresh MariaDB table, "
            "the consumer already in its group; the first 5% left out. Both servers and "
            "the producer on the same 2-core machine, which other sessions were loading "
            f"during the run (one run only: noisy). Median of {opts.rounds} rounds, each "
            "side in a fresh interpreter, order alternated."
        ),
    )


if __name__ == "__main__":
    main()
