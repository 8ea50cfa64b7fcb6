"""Chaos on the real backends: the DB actor (or the bridge) killed again and again while
many sessions are in flight, and sessions cancelled in every phase.

Nothing may be left to the garbage collector: a connection dropped without being closed
is a ``ResourceWarning`` (aiosqlite's "deleted before being closed", aiomysql's
"Unclosed connection"), which ``filterwarnings = error`` turns into a failure once
``gc.collect()`` (inside the test) finalizes it. And the pool must never log an error
("Exception during reset or similar": a cancellation that reached a connection's
reset). Committed work must be there afterwards, and the only errors callers may see
during a restart are ``DBUnavailable`` and, for a COMMIT cut off on the wire,
``DBCommitUnknown``.
"""

from __future__ import annotations

import functools
import gc
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
import trio.lowlevel
from sqlalchemy import text
from sqlalchemy.orm import Session

from gochat_actors import Bridge, DBCommitUnknown, DBUnavailable
from gochat_actors.db import DBManager, DBSession, DBSettings
from gochat_actors.metrics import Metrics
from supervisors import Backoff, ChildNotFound, ChildSpec, Supervisor, open_supervisor
from supervisors.testing import kill
from tests.gochat_actors.db.conftest import PairDB

BOUND = 30.0  # seconds any wait may take before the test fails
FAST_RESTART = Backoff(initial=0.05, maximum=0.2)

ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A file SQLite database in ``tmp_path``, or a fresh database on the real MariaDB."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'chaos.db'}"
    url: str = request.getfixturevalue("mariadb_url")
    return url


@dataclass
class Running:
    db: DBManager
    sup: Supervisor
    metrics: Metrics


@asynccontextmanager
async def running(url: str, *, shutdown: float = 5.0) -> AsyncIterator[Running]:
    """The DB actor as ``open_service`` runs it: a shared bridge, ``db`` depending on it."""
    metrics = Metrics()
    bridge = Bridge()
    settings = DBSettings.model_validate({"primary": url, "probe_interval": 0.5})
    db = DBManager(settings, bridge=bridge, metrics=metrics)
    specs = [
        ChildSpec("bridge", bridge.run, shutdown=5.0),
        db.spec("db", depends_on=("bridge",), shutdown=shutdown),
    ]
    # Restarts back off briefly (the default backoff grows to 5 s): what is tested is what
    # each kill leaves behind, not how long the supervisor waits before the next start.
    async with open_supervisor(specs, max_restarts=1000, backoff=FAST_RESTART) as sup:
        await db.with_transaction(_create_table)
        yield Running(db, sup, metrics)
    # Every connection went back to its pool or was closed: none is lost.
    assert metrics.registry.get_sample_value("gochat_db_connections_active") == 0


def _create_table(s: Session) -> None:
    s.execute(text("CREATE TABLE notes (id INT PRIMARY KEY, n INT NOT NULL)"))


def _insert(s: Session, note: int) -> int:
    s.execute(text("INSERT INTO notes (id, n) VALUES (:id, 0)"), {"id": note})
    return note


async def _insert_twice(session: DBSession, first: int, second: int) -> None:
    await session.execute(text("INSERT INTO notes (id, n) VALUES (:id, 0)"), {"id": first})
    await trio.sleep(0.002)  # idle between two crossings, holding the connection
    await session.execute(text("INSERT INTO notes (id, n) VALUES (:id, 0)"), {"id": second})


@dataclass
class Workload:
    """Writers and readers that run until stopped, recording what they committed."""

    db: DBManager
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    committed: set[int] = field(default_factory=set)
    unavailable: int = 0
    unknown: int = 0  # commits whose outcome nobody can tell
    done: int = 0  # operations that succeeded

    async def one(self, kind: int) -> None:
        db = self.db
        if kind == 0:  # the whole unit in one crossing
            note = next(self.ids)
            await db.with_transaction(_insert, note)
            self.committed.add(note)
        elif kind == 1:  # trio-side function, idle between its statements
            notes = next(self.ids), next(self.ids)
            await db.with_transaction(_insert_twice, *notes)
            self.committed.update(notes)
        elif kind == 2:  # a transaction block
            notes = next(self.ids), next(self.ids)
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO notes VALUES (:id, 1)"), {"id": notes[0]})
                await trio.sleep(0.002)
                await session.execute(text("INSERT INTO notes VALUES (:id, 1)"), {"id": notes[1]})
            self.committed.update(notes)
        else:  # a read
            async with db.reader() as session:
                await session.scalar(text("SELECT COUNT(*) FROM notes"))

    async def worker(self, kind: int) -> None:
        while True:
            try:
                await self.one(kind)
                self.done += 1
            except DBUnavailable:  # what a restart may show
                self.unavailable += 1
            except DBCommitUnknown:  # ... and a COMMIT it cut off on the wire
                self.unknown += 1
            await trio.lowlevel.checkpoint()

    async def wait_for_progress(self, count: int) -> None:
        """Until ``count`` more operations succeeded (the database is back, warmed up)."""
        target = self.done + count
        await wait_until(lambda: self.done >= target, f"{count} more operations")

    async def check_committed(self) -> None:
        """Every committed note is there. The last kill's restart may still be under way
        (operations that ended on the old incarnation count as progress): until the
        next one serves, a read gets DBUnavailable, the restart's only error."""
        with trio.fail_after(BOUND):
            while True:
                try:
                    async with self.db.reader(consistent=True) as session:
                        ids = (await session.scalars(text("SELECT id FROM notes"))).all()
                    break
                except DBUnavailable:
                    await trio.sleep(0.01)
        present = set(ids)
        assert self.committed <= present, f"lost {sorted(self.committed - present)[:10]}"


async def kill_repeatedly(
    run: Running, path: str, workload: Workload, kills: int, *, workers: int = 12
) -> None:
    async with trio.open_nursery() as nursery:
        for i in range(workers):
            nursery.start_soon(workload.worker, i % 4)
        for _ in range(kills):
            await workload.wait_for_progress(workers)
            await wait_until(lambda: try_kill(run.sup, path), f"{path} running again")
        await workload.wait_for_progress(workers)
        nursery.cancel_scope.cancel()


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    with trio.move_on_after(BOUND):
        while not predicate():  # noqa: ASYNC110 - the manager's state has no event
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out waiting for {what}")


def try_kill(sup: Supervisor, path: str) -> bool:
    """Kill the child at ``path``; False while it is not running (between incarnations)."""
    try:
        return kill(sup, path)
    except ChildNotFound:
        return False


async def assert_nothing_leaked(caplog: pytest.LogCaptureFixture) -> None:
    """Finalize any dropped connection now, inside the test (its ResourceWarning is then
    a failure), and check the pool logged no error."""
    for _ in range(3):
        gc.collect()
        await trio.sleep(0.01)
    errors = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("sqlalchemy")
    ]
    assert errors == []


@pytest.mark.parametrize(("path", "kills"), [("db", 8), ("bridge", 4)])
async def test_killed_repeatedly_with_sessions_in_flight(
    db_url: str, path: str, kills: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(db_url) as run:
        workload = Workload(run.db)
        await kill_repeatedly(run, path, workload, kills)
        await workload.check_committed()
    assert len(workload.committed) > 5 * kills
    await assert_nothing_leaked(caplog)


async def test_a_session_outliving_the_shutdown_budget_is_closed_and_rolled_back(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(db_url, shutdown=0.5) as run:
        db = run.db
        inside = trio.Event()
        errors: list[BaseException] = []

        async def slow_transaction() -> None:
            try:
                async with db.transaction() as session:
                    await session.execute(text("INSERT INTO notes VALUES (1, 0)"))
                    inside.set()
                    await trio.sleep(1.0)  # far past the budget: the server closes it
                    await session.execute(text("INSERT INTO notes VALUES (2, 0)"))
            except DBUnavailable as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_transaction)
            await inside.wait()
            assert try_kill(run.sup, "db")
        assert len(errors) == 1
        assert "stopped" in str(errors[0])
        async with db.reader(consistent=True) as session:
            assert (await session.scalar(text("SELECT COUNT(*) FROM notes"))) == 0
        # The next incarnation serves as usual.
        assert await db.with_transaction(_insert, 3) == 3
    await assert_nothing_leaked(caplog)


async def test_sessions_cancelled_in_every_phase_leak_nothing(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(7)
    async with running(db_url) as run:
        db = run.db
        notes = itertools.count(1)

        async def cancelled(unit: Callable[[], Awaitable[object]]) -> None:
            with trio.move_on_after(rng.uniform(0.0, 0.004)):
                await unit()

        async def block() -> None:
            async with db.transaction() as session:
                insert = text("INSERT INTO notes VALUES (:id, 0)")
                await session.execute(insert, {"id": next(notes)})

        for _ in range(150):
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    unit = functools.partial(db.with_transaction, _insert, next(notes))
                    nursery.start_soon(cancelled, unit)
                    nursery.start_soon(cancelled, block)
        assert await db.with_transaction(_insert, next(notes)) > 0
    await assert_nothing_leaked(caplog)


async def test_replica_killed_while_reading_fails_no_read_and_leaks_nothing(
    pair_db: PairDB, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    db = DBManager(pair_db.settings(sticky_seconds=0.0), metrics=metrics)
    async with open_supervisor([db.spec()]) as sup:
        await wait_until(lambda: db.statistics().replicas[0].admitted, "the replica's admission")
        await db.with_transaction(_create_table)
        await db.with_transaction(_insert, 1)
        await trio.to_thread.run_sync(pair_db.pair.wait_replicated)
        served: set[str] = set()

        async def reader() -> None:
            while True:  # any failure fails the test: reads fail over
                async with db.reader() as session:
                    assert await session.scalar(text("SELECT COUNT(*) FROM notes")) == 1
                    served.add(session.server)
                    await trio.sleep(0.002)  # idle on the replica, holding its connection

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(reader)
            for _ in range(3):  # the replica supervisor's default intensity: 3 in 5 s
                await wait_until(lambda: db.statistics().replicas[0].admitted, "re-admission")
                served.clear()
                await wait_until(lambda: "replica-0" in served, "reads on the replica")
                assert try_kill(sup, "db/replica-0")
                await wait_until(lambda: not db.statistics().replicas[0].admitted, "the ejection")
            nursery.cancel_scope.cancel()
    assert metrics.registry.get_sample_value("gochat_db_connections_active") == 0
    await assert_nothing_leaked(caplog)
