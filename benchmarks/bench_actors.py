"""Actor benchmarks: ``call`` round trip and ``cast`` throughput beside raw trio memory
channels, measured in the same run.

Run: ``.venv/bin/python -m benchmarks.bench_actors``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import trio

from benchmarks._report import Row, write_results


async def raw_call(n: int) -> float:
    """Round trips/s over two memory channels: request on one, reply on the other."""
    req_send, req_recv = trio.open_memory_channel[int](100)
    rep_send, rep_recv = trio.open_memory_channel[int](100)

    async def server() -> None:
        async for request in req_recv:
            await rep_send.send(request + 1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        t0 = time.perf_counter()
        for i in range(n):
            await req_send.send(i)
            await rep_recv.receive()
        elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return n / elapsed


async def ours_call(n: int) -> float:
    from supervisors import Actor, actor_spec, open_supervisor, whereis

    class Echo(Actor):
        async def handle_call(self, request: Any) -> Any:
            return request + 1

    async with open_supervisor([actor_spec("echo", Echo, mailbox_size=100)]):
        ref = whereis("echo")
        t0 = time.perf_counter()
        for i in range(n):
            await ref.call(i)
        return n / (time.perf_counter() - t0)


async def raw_cast(n: int) -> float:
    """One-way sends/s into a memory channel drained by a consumer task."""
    send, receive = trio.open_memory_channel[int](100)
    done = trio.Event()

    async def consumer() -> None:
        count = 0
        async for _ in receive:
            count += 1
            if count == n:
                done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        t0 = time.perf_counter()
        for i in range(n):
            await send.send(i)
        await done.wait()
        elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return n / elapsed


async def ours_cast(n: int) -> float:
    from supervisors import Actor, actor_spec, open_supervisor, whereis

    done = trio.Event()

    class Sink(Actor):
        async def init(self) -> None:
            self.count = 0

        async def handle_cast(self, message: Any) -> None:
            self.count += 1
            if self.count == n:
                done.set()

    async with open_supervisor([actor_spec("sink", Sink, mailbox_size=100)]):
        ref = whereis("sink")
        t0 = time.perf_counter()
        for i in range(n):
            await ref.cast(i)
        await done.wait()
        return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    opts = parser.parse_args()
    n = 20_000 if opts.quick else 200_000
    repeats = 3 if opts.quick else 5
    # Interleave ours and the peer so machine noise hits both alike.
    results: dict[str, list[float]] = {
        k: [] for k in ("raw_call", "ours_call", "raw_cast", "ours_cast")
    }
    for _ in range(repeats):
        results["raw_call"].append(trio.run(raw_call, n))
        results["ours_call"].append(trio.run(ours_call, n))
        results["raw_cast"].append(trio.run(raw_cast, n))
        results["ours_cast"].append(trio.run(ours_cast, n))
    med = {k: statistics.median(v) for k, v in results.items()}
    rows = [
        Row(
            "call round trip",
            1e6 / med["ours_call"],
            1e6 / med["raw_call"],
            "raw request/reply over 2 memory channels",
            False,
            "<= 1.5x",
            "us",
        ),
        Row(
            "cast throughput",
            med["ours_cast"],
            med["raw_cast"],
            "raw memory-channel send",
            True,
            ">= 0.7x",
            "msg/s",
        ),
    ]
    write_results(
        "actors",
        "python -m benchmarks.bench_actors" + (" --quick" if opts.quick else ""),
        rows,
        notes=f"{n:,} messages per run, median of {repeats} interleaved runs.",
    )


if __name__ == "__main__":
    main()
