"""Where a message's time goes in ``benchmarks.bench_pipeline_latency`` (a diagnostic, not
a benchmark): one side of it, run once, with per-message timestamps at each stage.

Stages (wall clock, one machine): the producer's send stamp; ``getmany`` returning it;
``Session.deliver`` taking it (ours); the dispatcher putting it in its partition queue
(ours); the batch processor called with it (ours); the COMMIT of its transaction
returning. Also: every aiokafka fetch request (start, end), fetches over 50 ms, and for
ours a trio instrument (per task: wall time of its steps, their CPU time, and the delay
from being scheduled to running). ``FETCH_MAX_WAIT_MS=20`` in the environment gives both
sides' consumers that ``fetch_max_wait_ms`` (aiokafka's default is 500).

Run: ``PYTHONPATH=. .venv/bin/python scripts/probe_pipeline_latency.py latency_ours 1000 10000``
(or ``latency_raw``; Kafka at 127.0.0.1:9092, MariaDB at 127.0.0.1:3306).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import statistics
import sys
import time
import uuid
from typing import Any

import trio
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import Fetcher

import benchmarks.bench_pipeline_latency as bench
from benchmarks.bench_mq import BROKERS, _raw_delete, _raw_topic, quiet
from benchmarks.bench_pipeline import _table
from gochat_actors.mq import _consumer, _session

Key = tuple[int, int]  # (partition, offset)
STAGES = ("get", "deliver", "dispatched", "start", "commit")
marks: dict[str, dict[Key, float]] = {name: {} for name in ("sent", *STAGES)}
by_value: dict[bytes, Key] = {}
fetches: list[tuple[float, float]] = []
batch_sizes: list[int] = []


def _mark(stage: str, records: dict[Any, list[Any]]) -> None:
    now = time.time()
    for tp, recs in records.items():
        for r in recs:
            marks[stage][(tp.partition, r.offset)] = now


def _patch_kafka() -> None:
    getmany, fetch = AIOKafkaConsumer.getmany, Fetcher._proc_fetch_request

    async def timed_getmany(self: Any, *args: Any, **kwargs: Any) -> Any:
        data = await getmany(self, *args, **kwargs)
        _mark("get", data)
        for tp, recs in data.items():
            for r in recs:
                if r.value:
                    by_value[r.value[:18]] = (tp.partition, r.offset)
        return data

    async def timed_fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.time()
        result = await fetch(self, *args, **kwargs)
        fetches.append((start, time.time()))
        return result

    AIOKafkaConsumer.getmany, Fetcher._proc_fetch_request = timed_getmany, timed_fetch
    wait = os.environ.get("FETCH_MAX_WAIT_MS")
    if wait:
        init = AIOKafkaConsumer.__init__

        def with_wait(self: Any, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("fetch_max_wait_ms", int(wait))
            init(self, *args, **kwargs)

        AIOKafkaConsumer.__init__ = with_wait


def _patch_ours() -> None:
    session = _session.Session
    nowait, deliver, dispatch = session.deliver_nowait, session.deliver, session._dispatch_batch

    def timed_nowait(self: Any, batch: Any) -> bool:
        taken = nowait(self, batch)
        if taken:
            _mark("deliver", batch.records)
        return taken

    async def timed_deliver(self: Any, batch: Any) -> None:
        await deliver(self, batch)
        _mark("deliver", batch.records)

    async def timed_dispatch(self: Any, batch: Any, limit: int) -> None:
        await dispatch(self, batch, limit)
        _mark("dispatched", batch.records)

    session.deliver_nowait, session.deliver = timed_nowait, timed_deliver  # type: ignore[method-assign]
    session._dispatch_batch = timed_dispatch  # type: ignore[method-assign]
    init = _consumer.Consumer.__init__

    def wrapped_init(self: Any, *args: Any, batch_processor: Any = None, **kwargs: Any) -> None:
        async def timed(msgs: list[Any]) -> None:
            now = time.time()
            batch_sizes.append(len(msgs))
            for m in msgs:
                marks["start"][(m.partition, m.offset)] = now
            await batch_processor(msgs)

        init(self, *args, batch_processor=timed, **kwargs)

    _consumer.Consumer.__init__ = wrapped_init  # type: ignore[method-assign]


def _patch_commit() -> None:
    """``bench._sent`` is called right after a batch's COMMIT, once per message."""
    sent = bench._sent

    def timed_sent(value: bytes) -> float:
        stamp = sent(value)
        key = by_value.get(value[:18])
        if key is not None:
            marks["commit"][key] = time.time()
            marks["sent"][key] = stamp
        return stamp

    bench._sent = timed_sent


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


class Steps(trio.abc.Instrument):
    """Per task name: wall and CPU time of its steps, scheduled-to-running delays."""

    def __init__(self) -> None:
        self.began: dict[Any, tuple[float, float]] = {}
        self.scheduled: dict[Any, float] = {}
        self.wall: dict[str, float] = collections.defaultdict(float)
        self.cpu: dict[str, float] = collections.defaultdict(float)
        self.waits: dict[str, list[float]] = collections.defaultdict(list)
        self.io_wait = 0.0
        self._io_began = 0.0

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        self.scheduled[task] = time.perf_counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        now = time.perf_counter()
        self.began[task] = (now, time.thread_time())
        scheduled = self.scheduled.pop(task, None)
        if scheduled is not None:
            self.waits[task.name.rsplit(".", 1)[-1]].append(now - scheduled)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        began = self.began.pop(task, None)
        if began is not None:
            name = task.name.rsplit(".", 1)[-1]
            self.wall[name] += time.perf_counter() - began[0]
            self.cpu[name] += time.thread_time() - began[1]

    def before_io_wait(self, timeout: float) -> None:
        self._io_began = time.perf_counter()

    def after_io_wait(self, timeout: float) -> None:
        self.io_wait += time.perf_counter() - self._io_began

    def report(self) -> None:
        print(f"  trio waiting for I/O {self.io_wait:.2f} s")
        for name, wall in sorted(self.wall.items(), key=lambda kv: -kv[1])[:5]:
            print(f"  steps of {name:24s} wall {wall:.2f} s, CPU {self.cpu[name]:.2f} s")
        for name, waits in sorted(self.waits.items(), key=lambda kv: -len(kv[1]))[:5]:
            print(
                f"  scheduled->running {name:18s} p50 {_pct(waits, 0.5):.2f} "
                f"p90 {_pct(waits, 0.9):.2f} ms"
            )


def report(name: str, n: int) -> None:
    stages = ["sent", *(s for s in STAGES if marks[s])]
    keys = set(marks["sent"])
    for stage in stages:
        keys &= set(marks[stage])
    kept = sorted(keys, key=marks["sent"].__getitem__)[n // 20 :]
    print(f"{name}: {len(kept)} messages")
    for a, b in itertools.pairwise(stages):
        d = [marks[b][k] - marks[a][k] for k in kept]
        print(
            f"  {a:>10} -> {b:<10} p50 {_pct(d, 0.5):7.1f}  p90 {_pct(d, 0.9):7.1f}  "
            f"p99 {_pct(d, 0.99):7.1f} ms"
        )
    total = [marks["commit"][k] - marks["sent"][k] for k in kept]
    print(f"  total p50 {_pct(total, 0.5):.1f} p99 {_pct(total, 0.99):.1f} ms")
    if batch_sizes:
        print(f"  {len(batch_sizes)} batches, median size {statistics.median(batch_sizes)}")
    kept_fetches = fetches[len(fetches) // 20 :]
    durations = [end - start for start, end in kept_fetches]
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(kept_fetches)]
    long = sorted(round(d * 1000) for d in durations if d > 0.05)
    print(
        f"  {len(kept_fetches)} fetches: duration p50 {_pct(durations, 0.5):.1f} "
        f"mean {statistics.mean(durations) * 1000:.1f} ms; end -> next start p50 "
        f"{_pct(gaps, 0.5):.1f} ms; over 50 ms: {len(long)} {long}"
    )


def main() -> None:
    name, rate, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    quiet()
    _patch_kafka()
    _patch_commit()
    topic = f"gochat-bench-lat-{uuid.uuid4().hex[:10]}"
    table = f"bench_lat_{uuid.uuid4().hex[:10]}"
    _table(table)
    try:
        asyncio.run(_raw_topic(BROKERS, topic))
        cpu, wall = time.process_time(), time.time()
        steps = Steps()
        if name == "latency_raw":
            result = asyncio.run(bench.raw(BROKERS, topic, table, rate, n))
        else:
            _patch_ours()
            args = (BROKERS, topic, table, rate, n)
            result = trio.run(bench.ours, *args, instruments=[steps])
        print(
            f"{name} at {rate} msg/s: p50 {result['p50'] * 1000:.1f} p99 "
            f"{result['p99'] * 1000:.1f} ms; CPU {time.process_time() - cpu:.2f} s in "
            f"{time.time() - wall:.1f} s"
        )
        report(name, n)
        if steps.wall:
            steps.report()
    finally:
        asyncio.run(_raw_delete(BROKERS, topic))
        _table(table, drop=True)


if __name__ == "__main__":
    main()
