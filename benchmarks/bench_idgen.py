"""ID generation benchmarks: ``IdGenerator.next_id()`` (leased machine ID, validity check
and metrics on) beside a naive pure-Python Snowflake function, and ``next_ids(n)``
against the 3 M IDs/s goal (the hard limit is 4.096 M/s per machine ID: 4,096 per ms),
all in the same run.

Run: ``.venv/bin/python -m benchmarks.bench_idgen`` (no server needed: the machine ID
is leased from the in-memory etcd).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import trio
import trio.lowlevel

from benchmarks._report import Row, write_results

EPOCH_MS = 1288834974657
HARD_LIMIT = 4096 * 1000  # IDs per second per machine ID (12 sequence bits)
GOAL = 3_000_000


class NaiveSnowflake:
    """The textbook pure-Python Snowflake: wall clock per call, spin on overflow."""

    def __init__(self, machine_id: int, *, epoch_ms: int, sequence_bits: int = 12) -> None:
        self.epoch_ms = epoch_ms
        self.mask = (1 << sequence_bits) - 1
        self.shift = sequence_bits + 10
        self.machine = machine_id << sequence_bits
        self.last_ms = -1
        self.sequence = 0

    def next_id(self) -> int:
        now = time.time_ns() // 1_000_000
        if now == self.last_ms:
            self.sequence = (self.sequence + 1) & self.mask
            if self.sequence == 0:
                while now <= self.last_ms:
                    now = time.time_ns() // 1_000_000
        else:
            self.sequence = 0
        self.last_ms = now
        return ((now - self.epoch_ms) << self.shift) | self.machine | self.sequence


def calls_per_second(fn: Callable[[], int], n: int) -> float:
    """Call ``fn`` ``n`` times in a tight loop; calls per second."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def ids_per_second(next_ids: Callable[[int], list[int]], batch: int, total: int) -> float:
    """IDs per second from ``next_ids(batch)`` until ``total`` IDs."""
    start = time.perf_counter()
    for _ in range(total // batch):
        next_ids(batch)
    return (total // batch * batch) / (time.perf_counter() - start)


async def measure(n: int, repeats: int, batch: int) -> dict[str, list[float]]:
    from gochat_actors import Dsn
    from gochat_actors.idgen import IdGenerator, IdGenSettings
    from gochat_actors.metrics import Metrics
    from supervisors import open_supervisor

    # The default layout caps both at 4,096 IDs per ms, which a fast machine reaches:
    # the "wide" one (20 sequence bits, a recent epoch) shows the cost of a call itself.
    recent = time.time_ns() // 1_000_000 - 86_400_000
    layouts = {
        "default": ({}, NaiveSnowflake(1, epoch_ms=EPOCH_MS)),
        "wide": (
            {"timestamp_bits": 33, "machine_bits": 10, "sequence_bits": 20, "epoch_ms": recent},
            NaiveSnowflake(1, epoch_ms=recent, sequence_bits=20),
        ),
    }
    results: dict[str, list[float]] = {}
    for name, (layout, naive) in layouts.items():
        settings = IdGenSettings.model_validate(
            {"etcd": Dsn("memory://"), "lease_ttl": 60.0, "margin": 5.0, **layout}
        )
        ids = IdGenerator(settings, metrics=Metrics())
        async with open_supervisor([ids.spec()]):
            calls_per_second(ids.next_id, n // 10)  # warm up both
            calls_per_second(naive.next_id, n // 10)
            for _ in range(repeats):  # interleaved, so drift hits both alike
                results.setdefault(f"{name} ours", []).append(calls_per_second(ids.next_id, n))
                results.setdefault(f"{name} naive", []).append(calls_per_second(naive.next_id, n))
                if name == "default":
                    results.setdefault("batch", []).append(
                        ids_per_second(ids.next_ids, batch, 4 * n)
                    )
                await trio.lowlevel.checkpoint()  # let the keeper renew
            assert ids.statistics().issued >= repeats * n, ids.statistics()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1_000_000, help="next_id() calls per repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=10_000, help="n of next_ids(n)")
    args = parser.parse_args()
    results = trio.run(measure, args.n, args.repeats, args.batch)
    median = {name: statistics.median(values) for name, values in results.items()}
    batch = median["batch"]
    write_results(
        "idgen",
        "python -m benchmarks.bench_idgen",
        [
            Row(
                "next_id() IDs/s, 20 sequence bits",
                ours=median["wide ours"],
                peer=median["wide naive"],
                peer_name="naive pure-Python snowflake",
                higher_is_better=True,
                target=">= 0.8x",
                unit="IDs/s",
                note="the cost of a call: the per-ms cap is out of reach; leased machine "
                "ID (deadline checked on every call), metrics on",
            ),
            Row(
                "next_id() IDs/s, default layout",
                ours=median["default ours"],
                peer=median["default naive"],
                peer_name="naive pure-Python snowflake",
                higher_is_better=True,
                target=">= 0.8x",
                unit="IDs/s",
                note="both may be capped at 4,096 IDs per ms (4.096 M/s)",
            ),
            Row(
                f"next_ids({args.batch}) IDs/s",
                ours=batch,
                peer=GOAL,
                peer_name="the 3 M/s goal",
                higher_is_better=True,
                target=">= 1.0x",
                unit="IDs/s",
                note=f"{batch / HARD_LIMIT:.0%} of the 4.096 M/s hard limit (4,096 IDs per ms)",
            ),
        ],
        notes=f"median of {args.repeats} interleaved repeats of {args.n:,} calls each",
    )


if __name__ == "__main__":
    main()
