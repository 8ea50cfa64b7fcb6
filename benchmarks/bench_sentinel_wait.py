"""What the lock's ``WAIT`` costs on Redis Sentinel (issue 20): the latency of one lock
acquire (the acquire script, then ``WAIT 1`` while the master has a replica) beside the
same acquire without the ``WAIT``, on a private master + replica + 3 sentinels on the
loopback (``tests/_clusters.py``), in the same run, interleaved bursts.

Contenders, each an acquire followed by its release (only the acquire is timed):

- ``sentinel, WAIT``: ``redis+sentinel://`` as shipped (the master has one replica);
- ``sentinel, no WAIT``: the same backend told the master has no replica;
- ``redis://``: the plain backend on the same master.

Run: ``.venv/bin/python -m benchmarks.bench_sentinel_wait`` (needs ``redis-server``;
``--n`` calls per burst, ``--rounds`` bursts per contender). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import trio


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    sentinel_url: str, master_url: str, n: int, rounds: int
) -> dict[str, list[float]]:
    from gochat_actors.lock import LockBackend, open_redis_locks
    from gochat_actors.lock._sentinel import SentinelLockBackend, open_sentinel_locks

    results: dict[str, list[float]] = {
        "sentinel, WAIT": [],
        "sentinel, no WAIT": [],
        "redis://": [],
    }
    async with (
        open_sentinel_locks(sentinel_url, key_prefix="bench:w:") as waiting,
        open_sentinel_locks(sentinel_url, key_prefix="bench:n:") as plain_sentinel,
        open_redis_locks(master_url, key_prefix="bench:r:") as plain,
    ):
        assert isinstance(waiting, SentinelLockBackend)
        assert isinstance(plain_sentinel, SentinelLockBackend)
        await waiting.ping()
        assert waiting.replicas == 1, "the master should have its replica"
        await plain_sentinel.ping()
        plain_sentinel._replicas = 0  # as if the master had no replica: no WAIT

        def timed(backend: LockBackend) -> Callable[[], Awaitable[float]]:
            async def once() -> float:
                start = time.perf_counter()
                result = await backend.acquire("bench", "0" * 32, 10.0)
                took = time.perf_counter() - start
                assert result.token is not None
                await backend.release("bench", "0" * 32)
                return took

            return once

        contenders = {
            "sentinel, WAIT": timed(waiting),
            "sentinel, no WAIT": timed(plain_sentinel),
            "redis://": timed(plain),
        }
        names = list(contenders)
        for name in names:  # warm up: connections, scripts loaded
            for _ in range(50):
                await contenders[name]()
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                for _ in range(n):
                    results[name].append(await contenders[name]())
    return results


def main() -> None:
    from tests._clusters import redis_sentinel_running

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    with redis_sentinel_running() as setup:
        master_url = f"redis://{setup.master_address()}/0"
        results = trio.run(measure, setup.url(), master_url, args.n, args.rounds)
    base = statistics.median(results["sentinel, no WAIT"])
    print("| acquire | median | p90 | p99 | median / sentinel, no WAIT |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median * 1e6:,.0f} us | {_quantile(values, 0.9) * 1e6:,.0f} us "
            f"| {_quantile(values, 0.99) * 1e6:,.0f} us | {median / base:.2f} |"
        )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"\n{len(results['redis://'])} acquires per contender, {when}")


if __name__ == "__main__":
    main()
