"""DB benchmark: transactions through ``DBManager`` (trio, SQLAlchemy async + aiomysql across
the trio-asyncio bridge) beside plain asyncio SQLAlchemy + aiomysql on the same MariaDB.

Two units of work, as the issue states them: a ``SELECT 1`` transaction, and a
transaction of three INSERTs. Ours runs them through ``db.transaction()`` (a trio-side
session: one crossing per statement, one for the commit) and, for reference, through
``db.with_transaction(sync_fn)`` (the whole unit in one crossing). The peer runs the same
SQLAlchemy ``AsyncSession`` code under ``asyncio.run``. Each side runs in a process of its
own, driven case by case (the peer, then ours, back to back), and the median of the
repeats is kept.

Run: ``.venv/bin/python -m benchmarks.bench_db`` (MariaDB at 127.0.0.1:3306, root, no
password, or ``GOCHAT_BENCH_MARIADB`` = ``host:port``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

from benchmarks._report import Row, write_results

DATABASE = "gochat_bench_db"
TABLE = "bench_messages"
SELECT_1 = "SELECT 1"
INSERT = f"INSERT INTO {TABLE} (room, body) VALUES (:room, :body)"
BODY = "x" * 100
POOL_SIZE = 10
PREFIX = "BENCH "  # marks the worker's protocol lines among its log lines

# (workload, concurrency) -> transactions per process run
CASES: dict[tuple[str, int], int] = {
    ("select1", 1): 2000,
    ("insert3", 1): 600,
    ("select1", 8): 3000,
    ("insert3", 8): 1200,
}


def server() -> tuple[str, int]:
    host, _, port = os.environ.get("GOCHAT_BENCH_MARIADB", "127.0.0.1:3306").partition(":")
    return host, int(port or 3306)


def url() -> str:
    host, port = server()
    return f"mysql+aiomysql://root@{host}:{port}/{DATABASE}"


def admin(*statements: str) -> None:
    import pymysql

    host, port = server()
    conn = pymysql.connect(host=host, port=port, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


async def drive(unit: Callable[[], Awaitable[None]], n: int, concurrency: int) -> float:
    """Transactions/s of ``n`` units spread over ``concurrency`` tasks (trio or asyncio)."""
    per_task = n // concurrency
    if concurrency == 1:
        t0 = time.perf_counter()
        for _ in range(per_task):
            await unit()
        return per_task / (time.perf_counter() - t0)
    import sniffio

    async def worker() -> None:
        for _ in range(per_task):
            await unit()

    t0 = time.perf_counter()
    if sniffio.current_async_library() == "trio":
        import trio

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    else:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return per_task * concurrency / (time.perf_counter() - t0)


# -- the peer: plain asyncio ---------------------------------------------------------------


def commands() -> Iterator[tuple[str, int, int]]:
    """The worker's side of the protocol: ``unit concurrency n`` lines until EOF."""
    print(f"{PREFIX}ready", flush=True)
    for line in sys.stdin:
        unit, concurrency, n = line.split()
        yield unit, int(concurrency), int(n)


def reply(value: float) -> None:
    print(f"{PREFIX}{json.dumps(value)}", flush=True)


async def peer_main() -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

    engine = create_async_engine(url(), pool_size=POOL_SIZE, max_overflow=0)
    # As ours: no ROLLBACK when a connection goes back to the pool after its COMMIT.
    lean = create_async_engine(
        url(), pool_size=POOL_SIZE, max_overflow=0, pool_reset_on_return=None
    )
    select_1, insert = text(SELECT_1), text(INSERT)

    def select1(engine: AsyncEngine) -> Callable[[], Awaitable[None]]:
        async def unit() -> None:
            async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
                (await session.execute(select_1)).scalar()

        return unit

    def insert3(engine: AsyncEngine) -> Callable[[], Awaitable[None]]:
        async def unit() -> None:
            async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
                for room in range(3):
                    await session.execute(insert, {"room": room, "body": BODY})

        return unit

    units = {
        "select1": select1(engine),
        "insert3": insert3(engine),
        "select1_lean": select1(lean),
        "insert3_lean": insert3(lean),
    }
    try:
        for unit, concurrency, n in commands():  # blocking reads: between measurements
            await drive(units[unit], n // 5, concurrency)  # warm up
            reply(await drive(units[unit], n, concurrency))
    finally:
        await engine.dispose()
        await lean.dispose()


# -- ours: DBManager under trio ------------------------------------------------------------


async def ours_main() -> None:
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from gochat_actors.db import DBManager, DBSettings
    from gochat_actors.metrics import Metrics
    from supervisors import open_supervisor

    settings = DBSettings.model_validate({"primary": url(), "pool_size": POOL_SIZE})
    db = DBManager(settings, metrics=Metrics())
    select_1, insert = text(SELECT_1), text(INSERT)

    async def select1() -> None:
        async with db.transaction() as session:
            (await session.execute(select_1)).scalar()

    async def insert3() -> None:
        async with db.transaction() as session:
            for room in range(3):
                await session.execute(insert, {"room": room, "body": BODY})

    def select1_sync(session: Session) -> None:
        session.execute(select_1).scalar()

    def insert3_sync(session: Session) -> None:
        for room in range(3):
            session.execute(insert, {"room": room, "body": BODY})

    async def select1_unit() -> None:
        await db.with_transaction(select1_sync)

    async def insert3_unit() -> None:
        await db.with_transaction(insert3_sync)

    units: dict[str, Callable[[], Awaitable[None]]] = {
        "select1": select1,
        "insert3": insert3,
        "select1_unit": select1_unit,
        "insert3_unit": insert3_unit,
    }
    async with open_supervisor([db.spec()]):
        for unit, concurrency, n in commands():
            await drive(units[unit], n // 5, concurrency)  # warm up
            reply(await drive(units[unit], n, concurrency))


class Worker:
    """A long-lived ``--side`` process measuring one unit at a time, on request."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_db", "--side", side],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._expect("ready")

    def _expect(self, what: str) -> str:
        """The next protocol line (log lines on stdout are skipped)."""
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the {self.side} worker died (exit {self.process.wait()})")
            if line.startswith(PREFIX):
                break
        line = line[len(PREFIX) :].strip()
        if what and line != what:
            raise RuntimeError(f"the {self.side} worker said {line!r}, not {what!r}")
        return line

    def measure(self, unit: str, concurrency: int, n: int) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{unit} {concurrency} {n}\n")
        self.process.stdin.flush()
        value: float = json.loads(self._expect(""))
        return value

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=["ours", "peer"])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    if args.side == "peer":
        asyncio.run(peer_main())
        return
    if args.side == "ours":
        import trio

        trio.run(ours_main)
        return

    admin(
        f"DROP DATABASE IF EXISTS {DATABASE}",
        f"CREATE DATABASE {DATABASE}",
        f"CREATE TABLE {DATABASE}.{TABLE} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
        "room INT NOT NULL, body VARCHAR(200) NOT NULL) ENGINE=InnoDB",
    )
    runs: dict[str, list[float]] = {}
    peer, ours = Worker("peer"), Worker("ours")
    try:
        for _ in range(args.repeats):  # each case: the peer, then ours, back to back
            for (workload, concurrency), n in CASES.items():
                key = f"{workload}/{concurrency}"
                runs.setdefault(f"peer:{key}", []).append(peer.measure(workload, concurrency, n))
                if concurrency == 1:
                    lean = peer.measure(f"{workload}_lean", concurrency, n)
                    runs.setdefault(f"peer:{workload}_lean/1", []).append(lean)
                for name in (workload, f"{workload}_unit"):
                    value = ours.measure(name, concurrency, n)
                    runs.setdefault(f"ours:{name}/{concurrency}", []).append(value)
    finally:
        peer.close()
        ours.close()
        admin(f"DROP DATABASE IF EXISTS {DATABASE}")
    med = {key: statistics.median(values) for key, values in runs.items()}

    def row(
        metric: str,
        ours: str,
        peer: str,
        target: str = "",
        note: str = "",
        peer_name: str = "asyncio SQLAlchemy + aiomysql",
    ) -> Row:
        return Row(
            metric,
            ours=med[f"ours:{ours}"],
            peer=med[f"peer:{peer}"],
            peer_name=peer_name,
            higher_is_better=True,
            target=target,
            unit="tx/s",
            note=note,
        )

    one = "whole unit in one crossing"
    lean_peer = "the same, pool_reset_on_return=None"
    lean_note = "as ours: no ROLLBACK on pool checkin (same round trips)"
    rows = [
        row("SELECT 1 tx/s, db.transaction()", "select1/1", "select1/1", ">= 0.85x"),
        row("3-INSERT tx/s, db.transaction()", "insert3/1", "insert3/1", ">= 0.85x"),
        row(
            "SELECT 1 tx/s, db.transaction(), peer without pool reset",
            "select1/1",
            "select1_lean/1",
            note=lean_note,
            peer_name=lean_peer,
        ),
        row(
            "3-INSERT tx/s, db.transaction(), peer without pool reset",
            "insert3/1",
            "insert3_lean/1",
            note=lean_note,
            peer_name=lean_peer,
        ),
        row("SELECT 1 tx/s, with_transaction(sync fn)", "select1_unit/1", "select1/1", note=one),
        row("3-INSERT tx/s, with_transaction(sync fn)", "insert3_unit/1", "insert3/1", note=one),
        row("SELECT 1 tx/s, db.transaction(), 8 tasks", "select1/8", "select1/8"),
        row("3-INSERT tx/s, db.transaction(), 8 tasks", "insert3/8", "insert3/8"),
        row("SELECT 1 tx/s, with_transaction, 8 tasks", "select1_unit/8", "select1/8", note=one),
        row("3-INSERT tx/s, with_transaction, 8 tasks", "insert3_unit/8", "insert3/8", note=one),
    ]
    host, port = server()
    write_results(
        "db",
        "python -m benchmarks.bench_db",
        rows,
        notes=(
            f"MariaDB at {host}:{port}, pool_size {POOL_SIZE}; median of {args.repeats} "
            "interleaved runs (each case measured on the peer, then on ours, in two long-lived "
            "processes); ours with metrics on. "
            "db.transaction() crosses the bridge once per statement and once for the "
            "commit; with_transaction(sync fn) once per transaction. Ours lets a "
            "connection go back to the pool without a ROLLBACK after its COMMIT "
            "(pool_reset_on_return=None, docs/db.md): 4 round trips per 3-INSERT "
            "transaction where SQLAlchemy's default makes 5 (counted with strace); the rows "
            "'peer without pool reset' give the peer the same setting. Each crossing "
            "makes a new asyncio task and a greenlet; the bridge runs the task's first step "
            "in the calling trio task and what a socket read makes ready in the reader task, "
            "so a statement costs two trio scheduling rounds (four before 2026-12-06, six "
            "with trio-asyncio as it comes). The shared MariaDB is also used by other test "
            "runs on a 2-core machine whose speed drifts: single runs vary by 20-30%, "
            "medians of 9 by 5-10%. Three runs on 2026-12-06 on a host where an empty "
            "crossing takes 12-15 us of CPU: 3-INSERT 0.91x, 0.97x, 1.01x; SELECT 1 1.06-1.12x. "
            "The ratio falls on a slower CPU (the peer's time is mostly the server's; ours "
            "adds the crossings' CPU): on a host where an empty crossing took ~35 us the "
            "3-INSERT row was 0.80-0.87x (six runs through a day). "
            "Since 2026-12-07 (issue 24) a statement's crossing runs fewer frames: the "
            "bridge runs the session's coroutine as the asyncio task itself "
            "(Bridge.run_coroutine), the statement goes straight to SQLAlchemy's "
            "greenlet_spawn (not through AsyncSession.run_sync), a session without a "
            "replica calls its handle directly, a transaction without timeout opens no "
            "cancel scope, and a query's metric series is one lookup. Python calls per "
            "transaction (cProfile, deterministic, metrics on): 3-INSERT 1,924 -> 1,813, "
            "SELECT 1 1,168 -> 1,093; the peer makes 1,224 and 811. What remains is the "
            "two schedulers: per crossing ~40 calls in trio (the caller's wait, the reader "
            "task's wake, the epoll re-registration) and ~26 in the bridge (the task, its "
            "done callback, the ready queue). Same-run ratios on 2026-12-07, before (main "
            "at 6528dec) and after, run alternately on this machine while other sessions "
            "loaded it (a peer's lean/default ratio swung 0.80-2.3): SELECT 1 / 3-INSERT "
            "before 0.63x/1.06x (tests running beside it), 0.79x/0.91x, 1.07x/1.19x; after "
            "0.84x/1.25x, 0.97x/0.72x. At this noise "
            "the change (~6% fewer calls) is below what a 9-run median resolves, and the "
            "issue's target (>= 1.0x on a slow host) is not shown to be met."
        ),
    )


if __name__ == "__main__":
    main()
