"""Cache benchmarks: GET and SET throughput through ``gochat_actors.cache.Cache`` (metrics
on) beside raw coredis on the same server, and redis-py's asyncio client through the
trio-asyncio bridge (``gochat_actors.Bridge``), all in the same run.

Run: ``.venv/bin/python -m benchmarks.bench_cache`` (needs Redis at 127.0.0.1:6379; the
keys live under ``gochat-bench:`` and are deleted afterwards).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from benchmarks._report import Row, write_results

URL = "redis://127.0.0.1:6379/0"
PREFIX = "gochat-bench:cache:"
VALUE = b"x" * 100

Op = Callable[[], Awaitable[Any]]


async def ops_per_second(op: Op, n: int, tasks: int) -> float:
    """``n`` calls of ``op`` spread over ``tasks`` concurrent tasks; calls per second."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await op()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(tasks):
            nursery.start_soon(worker, n // tasks + (1 if i < n % tasks else 0))
    return n / (time.perf_counter() - start)


async def measure(n: int, repeats: int, tasks: int) -> dict[str, list[float]]:
    import coredis
    import redis.asyncio
    from coredis.retry import NoRetryPolicy

    from gochat_actors import Bridge, Dsn
    from gochat_actors.cache import Cache, CacheSettings
    from gochat_actors.metrics import Metrics

    cache = Cache(CacheSettings(url=Dsn(URL), key_prefix=PREFIX), metrics=Metrics())
    raw: coredis.Redis[bytes] = coredis.Redis.from_url(URL, retry_policy=NoRetryPolicy())
    bridge = Bridge()
    results: dict[str, list[float]] = {}
    async with trio.open_nursery() as nursery, raw:
        await nursery.start(cache.run)
        await nursery.start(bridge.run)

        async def make_redis_py() -> redis.asyncio.Redis:
            return redis.asyncio.Redis.from_url(URL)

        rpy = await bridge.run_asyncio(make_redis_py)
        key = PREFIX + "k"
        await raw.set(key, VALUE)

        async def ours_get() -> Any:
            return await cache.get("k")

        async def ours_set() -> Any:
            return await cache.set("k", VALUE)

        async def raw_get() -> Any:
            return await raw.get(key)

        async def raw_set() -> Any:
            return await raw.set(key, VALUE)

        async def rpy_get() -> Any:
            return await bridge.run_asyncio(rpy.get, key)

        async def rpy_set() -> Any:
            return await bridge.run_asyncio(rpy.set, key, VALUE)

        contenders = {
            "ours_get": ours_get,
            "raw_get": raw_get,
            "rpy_get": rpy_get,
            "ours_set": ours_set,
            "raw_set": raw_set,
            "rpy_set": rpy_set,
        }
        for name, op in contenders.items():  # warm up connections and code paths
            await ops_per_second(op, 500, tasks)
            results[name] = []
        names = list(contenders)
        for round_ in range(repeats):  # interleaved, so machine noise hits everyone alike;
            shift = round_ % len(names)  # rotated, so no one always follows the bridge
            for name in names[shift:] + names[:shift]:
                results[name].append(await ops_per_second(contenders[name], n, tasks))
        await raw.delete([key])
        await bridge.run_asyncio(rpy.aclose)
        nursery.cancel_scope.cancel()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", type=int, default=1, help="concurrent callers")
    opts = parser.parse_args()
    # Many short interleaved bursts: load on a shared machine comes and goes, and hits
    # every contender alike only if they take turns often.
    n = 500
    repeats = 10 if opts.quick else 40
    results = trio.run(measure, n, repeats, opts.tasks)
    med = {name: statistics.median(values) for name, values in results.items()}
    rows = []
    for op in ("get", "set"):
        upper = op.upper()
        rows.append(
            Row(
                f"{upper} ops/s",
                med[f"ours_{op}"],
                med[f"raw_{op}"],
                "raw coredis",
                True,
                ">= 0.9x",
                "ops/s",
            )
        )
        rows.append(
            Row(
                f"{upper} ops/s vs redis-py",
                med[f"ours_{op}"],
                med[f"rpy_{op}"],
                "redis-py (asyncio) via Bridge",
                True,
                "",
                "ops/s",
                "redis-py's asyncio client, one bridge crossing per call",
            )
        )
    command = "python -m benchmarks.bench_cache" + (" --quick" if opts.quick else "")
    if opts.tasks != 1:
        command += f" --tasks {opts.tasks}"
    write_results(
        "cache",
        command,
        rows,
        notes=(
            f"bursts of {n:,} sequential calls from {opts.tasks} task(s), 100-byte value; "
            f"median of {repeats} interleaved bursts each (order rotated each round); "
            "ours = Cache with metrics on."
        ),
    )


if __name__ == "__main__":
    main()
