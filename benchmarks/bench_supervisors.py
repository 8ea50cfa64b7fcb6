"""Supervision benchmarks: restart latency, 100,000 idle children, a crash/restart storm,
each beside raw trio and triotp measured in the same run.

Run: ``.venv/bin/python -m benchmarks.bench_supervisors`` (add ``--quick`` for a smoke
run). Every scenario runs in its own subprocess so resident memory is comparable.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import trio

from benchmarks._report import Row, write_results

CHILDREN = 100_000
GROUPS = 100


def rss_mb() -> float:
    """Current resident set size in MiB (from /proc, not the peak)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# ---------------------------------------------------------------- restart latency


async def latency_raw(cycles: int) -> list[float]:
    """Raw trio: how long ``nursery.start`` of the same function takes to be ready."""
    samples = []

    async def worker(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async with trio.open_nursery() as nursery:
        for _ in range(cycles):
            t0 = time.perf_counter()
            await nursery.start(worker)
            samples.append(time.perf_counter() - t0)
    return samples


async def latency_ours(cycles: int) -> list[float]:
    """Ours: from the child raising to its next incarnation being ready."""
    from supervisors import ChildSpec, open_supervisor

    samples: list[float] = []
    crashed_at = [0.0]
    done = trio.Event()
    go = trio.Event()

    async def worker(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if crashed_at[0]:
            samples.append(time.perf_counter() - crashed_at[0])
        task_status.started()
        if len(samples) >= cycles:
            done.set()
            await trio.sleep_forever()
        await go.wait()
        crashed_at[0] = time.perf_counter()
        raise RuntimeError("crash")

    async with open_supervisor(
        [ChildSpec("w", worker)], max_restarts=10**9, max_seconds=1, backoff=None
    ):  # no backoff: the others restart at once too
        go.set()
        await done.wait()
    return samples


async def latency_triotp(cycles: int) -> list[float]:
    """triotp's one_for_one supervisor restarting the same crashing task."""
    from triotp import supervisor as tsup

    samples: list[float] = []
    crashed_at = [0.0]
    done = trio.Event()

    async def worker() -> None:
        if crashed_at[0]:
            samples.append(time.perf_counter() - crashed_at[0])
        if len(samples) >= cycles:
            done.set()
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()
        crashed_at[0] = time.perf_counter()
        raise RuntimeError("crash")

    specs = [tsup.child_spec(id="w", task=worker, args=[], restart=tsup.restart_strategy.PERMANENT)]
    opts = tsup.options(max_restarts=10**9, max_seconds=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tsup.start, specs, opts)
        await done.wait()
        nursery.cancel_scope.cancel()
    return samples


# ------------------------------------------------------------ 100,000 children


async def _many_raw(count: int, *, readiness: bool) -> dict[str, float]:
    base = rss_mb()
    channels = []
    running = [0]
    all_running = trio.Event()

    async def idle(
        receive: trio.MemoryReceiveChannel[None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        running[0] += 1
        if running[0] == count:
            all_running.set()
        async with receive:
            await receive.receive()

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            send, receive = trio.open_memory_channel[None](0)
            channels.append(send)
            if readiness:
                await nursery.start(idle, receive)
            else:
                nursery.start_soon(idle, receive)
        await all_running.wait()
        started = time.perf_counter() - t0
        gc.collect()
        mem = rss_mb() - base
        t1 = time.perf_counter()
        nursery.cancel_scope.cancel()
    stopped = time.perf_counter() - t1
    return {"start_s": started, "rss_mb": mem, "stop_s": stopped}


async def many_raw(count: int) -> dict[str, float]:
    """Raw trio, each task started with ``nursery.start`` (readiness, like ours)."""
    return await _many_raw(count, readiness=True)


async def many_soon(count: int) -> dict[str, float]:
    """Raw trio, tasks spawned with ``start_soon`` (no readiness at all)."""
    return await _many_raw(count, readiness=False)


async def many_ours(count: int) -> dict[str, float]:
    from supervisors import ChildSpec, open_supervisor, supervisor_spec

    base = rss_mb()

    async def idle(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    per = count // GROUPS
    groups = [
        supervisor_spec(f"g{g}", [ChildSpec(f"c{i}", idle, shutdown=1.0) for i in range(per)])
        for g in range(GROUPS)
    ]
    t0 = time.perf_counter()
    async with open_supervisor(groups) as sup:
        started = time.perf_counter() - t0
        gc.collect()
        mem = rss_mb() - base
        t1 = time.perf_counter()
        sup.shutdown_nowait()
    stopped = time.perf_counter() - t1
    return {"start_s": started, "rss_mb": mem, "stop_s": stopped}


async def many_triotp(count: int) -> dict[str, float]:
    from triotp import supervisor as tsup

    base = rss_mb()
    running = [0]
    all_running = trio.Event()

    async def idle() -> None:
        running[0] += 1
        if running[0] == count:
            all_running.set()
        await trio.sleep_forever()

    per = count // GROUPS
    opts = tsup.options()
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for g in range(GROUPS):
            specs = [tsup.child_spec(id=f"g{g}c{i}", task=idle, args=[]) for i in range(per)]
            nursery.start_soon(tsup.start, specs, opts)
        await all_running.wait()
        started = time.perf_counter() - t0
        gc.collect()
        mem = rss_mb() - base
        t1 = time.perf_counter()
        nursery.cancel_scope.cancel()
    stopped = time.perf_counter() - t1
    return {"start_s": started, "rss_mb": mem, "stop_s": stopped}


# ------------------------------------------------------------- restart storm


async def storm(seconds: float, rate: int) -> dict[str, float]:
    """Crash/restart ``rate`` times a second; memory and task count at 1 s and at the end."""
    from supervisors import ChildSpec, open_supervisor

    restarts = [0]

    begin = trio.current_time()

    async def worker(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        restarts[0] += 1
        task_status.started()
        await trio.sleep_until(begin + restarts[0] / rate)  # paced: `rate` cycles a second
        raise RuntimeError("storm")

    def task_count() -> int:
        def walk(task: trio.lowlevel.Task) -> int:
            return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

        root = trio.lowlevel.current_root_task()
        assert root is not None
        return walk(root)

    samples: list[tuple[float, float, int]] = []
    async with open_supervisor(
        [ChildSpec("w", worker)], max_restarts=10**9, max_seconds=1, backoff=None
    ) as sup:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await trio.sleep(0.5)
            gc.collect()
            samples.append((time.perf_counter() - t0, rss_mb(), task_count()))
        sup.shutdown_nowait()
    early = next(s for s in samples if s[0] >= 1.0)
    late = samples[-1]
    return {
        "restarts_per_s": restarts[0] / seconds,
        "rss_growth_mb": late[1] - early[1],
        "tasks_early": early[2],
        "tasks_late": late[2],
    }


SCENARIOS: dict[str, Callable[..., Any]] = {
    "latency_raw": latency_raw,
    "latency_ours": latency_ours,
    "latency_triotp": latency_triotp,
    "many_raw": many_raw,
    "many_soon": many_soon,
    "many_ours": many_ours,
    "many_triotp": many_triotp,
    "storm": storm,
}


def run_scenario(name: str, *args: Any) -> Any:
    """Run one scenario in a fresh interpreter and return its JSON result."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_supervisors", "--scenario", name, *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario")
    parser.add_argument("args", nargs="*")
    parser.add_argument("--quick", action="store_true")
    opts = parser.parse_args()
    if opts.scenario:
        fn = SCENARIOS[opts.scenario]
        args = [float(a) if "." in a else int(a) for a in opts.args]
        print(json.dumps(trio.run(fn, *args)))
        return
    cycles = 500 if opts.quick else 5000
    count = 10_000 if opts.quick else CHILDREN
    storm_s = 3.0 if opts.quick else 10.0

    lat = {k: run_scenario(f"latency_{k}", cycles) for k in ("raw", "ours", "triotp")}
    med = {k: statistics.median(v) * 1e6 for k, v in lat.items()}
    p99 = {k: percentile(v, 0.99) * 1e6 for k, v in lat.items()}
    many = {k: run_scenario(f"many_{k}", count) for k in ("raw", "soon", "ours", "triotp")}
    st = run_scenario("storm", storm_s, 1000)

    rows = [
        Row(
            "restart latency median",
            med["ours"],
            med["raw"],
            "raw nursery.start",
            False,
            "<= 3x",
            "us",
        ),
        Row(
            "restart latency p99",
            p99["ours"],
            p99["raw"],
            "raw nursery.start",
            False,
            "<= 3x",
            "us",
        ),
        Row(
            "restart latency median",
            med["ours"],
            med["triotp"],
            "triotp one_for_one",
            False,
            "<= 1x",
            "us",
        ),
        Row(
            "restart latency p99",
            p99["ours"],
            p99["triotp"],
            "triotp one_for_one",
            False,
            "<= 1x",
            "us",
        ),
    ]
    for key, label, unit in (
        ("start_s", "start", "s"),
        ("rss_mb", "RSS", "MiB"),
        ("stop_s", "full shutdown", "s"),
    ):
        rows.append(
            Row(
                f"{count:,} children: {label}",
                many["ours"][key],
                many["raw"][key],
                "raw trio tasks + channels, nursery.start",
                False,
                "<= 1.5x",
                unit,
            )
        )
        rows.append(
            Row(
                f"{count:,} children: {label}",
                many["ours"][key],
                many["soon"][key],
                "raw trio tasks + channels, start_soon",
                False,
                "<= 1.5x",
                unit,
            )
        )
        rows.append(
            Row(
                f"{count:,} children: {label}",
                many["ours"][key],
                many["triotp"][key],
                "triotp one_for_one",
                False,
                "<= 1x",
                unit,
            )
        )
    rows.append(
        Row(
            "storm: RSS growth 1s->end",
            st["rss_growth_mb"],
            1.0,
            "1 MiB budget",
            False,
            "<= 1x",
            "MiB",
            note=f"{st['restarts_per_s']:.0f} restarts/s; "
            f"tasks {st['tasks_early']} -> {st['tasks_late']}",
        )
    )
    rows.append(
        Row(
            "storm: tasks at end / at 1s",
            st["tasks_late"],
            st["tasks_early"],
            "task count at 1 s",
            False,
            "<= 1x",
            "tasks",
        )
    )
    write_results(
        "supervisors",
        "python -m benchmarks.bench_supervisors" + (" --quick" if opts.quick else ""),
        rows,
        notes="Each scenario runs in its own interpreter. triotp 0.2.1 (installed with --no-deps "
        "on current trio) has no readiness protocol: its start time is until every child ran.",
    )


if __name__ == "__main__":
    main()
