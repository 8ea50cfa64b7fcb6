"""Lock benchmark: median latency of ``async with locks.hold(name)`` (acquire + release:
two Lua round trips, plus the renewer task in the holder's nursery) beside a raw coredis
PING round trip on the same server, in the same run. The target is 3 round trips.

Run: ``.venv/bin/python -m benchmarks.bench_lock`` (needs Redis at 127.0.0.1:6379; the
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
PREFIX = "gochat-bench:lock:"


async def latencies(op: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    """Seconds taken by each of ``n`` sequential calls of ``op``."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await op()
        out.append(time.perf_counter() - start)
    return out


async def measure(n: int, repeats: int) -> dict[str, list[float]]:
    import coredis
    from coredis.retry import NoRetryPolicy

    from gochat_actors import Dsn
    from gochat_actors.cache import CacheSettings
    from gochat_actors.lock import Locks, LockSettings, lock_keys
    from gochat_actors.lock._redis import ACQUIRE, RELEASE
    from gochat_actors.metrics import Metrics

    cache_settings = CacheSettings(url=Dsn(URL), key_prefix=PREFIX)
    locks = Locks(LockSettings(), cache_settings=cache_settings, metrics=Metrics())
    raw: coredis.Redis[bytes] = coredis.Redis.from_url(URL, retry_policy=NoRetryPolicy())
    key, fence = lock_keys(PREFIX + "raw:", "bench")
    owner = "0" * 32
    results: dict[str, list[float]] = {"ours": [], "ping": [], "scripts": []}
    async with trio.open_nursery() as nursery, raw:
        await nursery.start(locks.run)
        acquire, release = raw.register_script(ACQUIRE), raw.register_script(RELEASE)

        async def ours() -> None:
            async with locks.hold("bench"):
                pass

        async def ping() -> None:
            await raw.ping()

        async def scripts() -> None:  # the two round trips alone, no library around them
            await acquire(keys=[key, fence], args=[owner, 10_000])
            await release(keys=[key], args=[owner])

        contenders = {"ours": ours, "ping": ping, "scripts": scripts}
        for op in contenders.values():
            await latencies(op, 300)  # warm up
        names = list(contenders)
        for round_ in range(repeats):  # short interleaved bursts, order rotated: load on
            shift = round_ % len(names)  # a shared machine hits every contender alike
            for name in names[shift:] + names[:shift]:
                results[name].extend(await latencies(contenders[name], n))
        await raw.delete([key, fence, *lock_keys(PREFIX, "bench")])
        nursery.cancel_scope.cancel()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    opts = parser.parse_args()
    n = 250
    repeats = 10 if opts.quick else 40
    results = trio.run(measure, n, repeats)
    med = {name: statistics.median(values) * 1e6 for name, values in results.items()}
    rows = [
        Row("acquire+release median", med["ours"], med["ping"], "raw coredis PING", False,
            "<= 3x", "us", "ours / one PING round trip: the target is 3 round trips"),
        Row("acquire+release vs its 2 scripts", med["ours"], med["scripts"],
            "the 2 Lua scripts via coredis Script", False, "", "us",
            "what the lock adds around its two round trips"),
    ]  # fmt: skip
    write_results(
        "lock",
        "python -m benchmarks.bench_lock" + (" --quick" if opts.quick else ""),
        rows,
        notes=(
            f"{repeats} interleaved bursts of {n:,} sequential calls each (order rotated); "
            "medians of all calls."
        ),
    )


if __name__ == "__main__":
    main()
