"""Bridge A/B (issue 29): the shipped bridge (trio-asyncio, tuned) against a minimal
prototype of option (b), a real asyncio loop in a thread of its own, crossed with
public APIs only (``asyncio.run_coroutine_threadsafe`` / ``loop.call_soon_threadsafe``
one way, ``TrioToken.run_sync_soon`` the other). The prototype is not shipped.

Each workload is one crossing per unit, the whole unit on the asyncio side, for both:
an empty coroutine; a MariaDB transaction of three INSERTs (SQLAlchemy async +
aiomysql); a Kafka produce (``send_and_wait``); a Kafka consume + commit of a batch.
Each bridge runs in a process of its own (trio-asyncio, once imported, patches asyncio's
module functions for every loop), alternately, ``--rounds`` times; the median is kept.

Run: ``.venv/bin/python -m benchmarks.bridge_ab`` (MariaDB 127.0.0.1:3306, Kafka 9092).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import trio

from gochat_actors import Bridge

T = TypeVar("T")
DATABASE = "gochat_bench_bridge"
INSERT = "INSERT INTO m (room, body) VALUES (:room, :body)"


class ThreadBridge:
    """Option (b), minimal: a real asyncio loop in its own thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> NoReturn:
        loop = asyncio.SelectorEventLoop()  # asyncio's own, whatever the policy says
        thread = threading.Thread(target=loop.run_forever, name="asyncio", daemon=True)
        thread.start()
        self._loop = loop
        try:
            task_status.started(self)
            await trio.sleep_forever()
        finally:
            self._loop = None

            def stop() -> None:
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                loop.stop()

            loop.call_soon_threadsafe(stop)
            await trio.to_thread.run_sync(thread.join)
            loop.close()

    async def run_asyncio(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        loop = self._loop
        assert loop is not None
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()
        done = False

        def wake(_: object) -> None:
            def resume() -> None:
                nonlocal done
                if not done:
                    done = True
                    trio.lowlevel.reschedule(task)

            token.run_sync_soon(resume)

        async def call() -> T:
            return await fn(*args)

        future = asyncio.run_coroutine_threadsafe(call(), loop)
        future.add_done_callback(wake)
        raise_cancel: Callable[[], NoReturn] | None = None

        def abort(raise_cancel_: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
            nonlocal raise_cancel
            raise_cancel = raise_cancel_
            loop.call_soon_threadsafe(future.cancel)  # then wait for the task to end
            return trio.lowlevel.Abort.FAILED

        await trio.lowlevel.wait_task_rescheduled(abort)
        if raise_cancel is not None and future.cancelled():
            raise_cancel()
        return future.result()


async def timed(bridge: Any, unit: Callable[[], Awaitable[object]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await bridge.run_asyncio(unit)
    return n / (time.perf_counter() - start)


async def workloads(bridge: Any, kafka: bool, n: int) -> dict[str, float]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    out: dict[str, float] = {}

    async def noop() -> None:
        await asyncio.sleep(0)

    out["empty crossing /s"] = await timed(bridge, noop, n * 5)

    async def make_engine() -> Any:
        return create_async_engine(f"mysql+aiomysql://root@127.0.0.1:3306/{DATABASE}", pool_size=4)

    engine = await bridge.run_asyncio(make_engine)
    insert = text(INSERT)

    async def insert3() -> None:
        async with engine.begin() as conn:
            for i in range(3):
                await conn.execute(insert, {"room": i, "body": "x" * 100})

    await timed(bridge, insert3, 20)  # warm the pool
    out["3-INSERT tx/s"] = await timed(bridge, insert3, n)
    await bridge.run_asyncio(engine.dispose)
    if not kafka:
        return out

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"bridge-ab-{uuid.uuid4().hex[:8]}"

    async def start_producer() -> Any:
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9092", linger_ms=0)
        await producer.start()
        return producer

    producer = await bridge.run_asyncio(start_producer)

    async def produce() -> None:
        await producer.send_and_wait(topic, b"x" * 100)

    await timed(bridge, produce, 20)
    out["produce (send_and_wait) /s"] = await timed(bridge, produce, n)
    await bridge.run_asyncio(producer.stop)

    async def start_consumer() -> Any:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers="127.0.0.1:9092",
            group_id=f"g-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_poll_records=10,
        )
        await consumer.start()
        return consumer

    consumer = await bridge.run_asyncio(start_consumer)
    got = 0

    async def consume_commit() -> None:
        nonlocal got
        batches = await consumer.getmany(timeout_ms=1000, max_records=10)
        got += sum(len(b) for b in batches.values())
        await consumer.commit()

    start = time.perf_counter()
    target = n + 20
    while got < target:
        await bridge.run_asyncio(consume_commit)
    out["consume + commit (10-record batches) records/s"] = got / (time.perf_counter() - start)
    await bridge.run_asyncio(consumer.stop)
    return out


async def one(kind: str, kafka: bool, n: int) -> dict[str, float]:
    bridge: Any = Bridge() if kind == "trio-asyncio" else ThreadBridge()
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        result = await workloads(bridge, kafka, n)
        nursery.cancel_scope.cancel()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--no-kafka", action="store_true")
    parser.add_argument("--worker", choices=["trio-asyncio", "thread"])
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(trio.run(one, args.worker, not args.no_kafka, args.n)))
        return
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {DATABASE}.m "
            "(id BIGINT AUTO_INCREMENT PRIMARY KEY, room INT, body VARCHAR(200))"
        )
    conn.close()
    results: dict[str, dict[str, list[float]]] = {"trio-asyncio": {}, "thread": {}}
    for _ in range(args.rounds):
        for kind in results:
            command = [sys.executable, "-m", "benchmarks.bridge_ab", "--worker", kind]
            command += ["--n", str(args.n)] + (["--no-kafka"] if args.no_kafka else [])
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            for name, value in json.loads(output.strip().splitlines()[-1]).items():
                results[kind].setdefault(name, []).append(value)
    print(f"{'workload':50} {'trio-asyncio':>13} {'thread (b)':>11} {'b/a':>6}")
    for name, values in results["trio-asyncio"].items():
        a, b = statistics.median(values), statistics.median(results["thread"][name])
        print(f"{name:50} {a:13.0f} {b:11.0f} {b / a:6.2f}")


if __name__ == "__main__":
    main()
