"""DBManager's API: spec(), validation, retries, bounded rollback, metrics, SQLite rules."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from sqlalchemy import text
from sqlalchemy.orm import Session

from gochat_actors import (
    Bridge,
    DBCommitUnknown,
    DBError,
    DBRetryExhausted,
    DBTimeout,
    DBUnavailable,
)
from gochat_actors.db import DBManager, DBSession, DBSettings, MemoryDB
from gochat_actors.db._protocol import COMMIT_GRACE
from gochat_actors.db._session import ROLLBACK_TIMEOUT
from gochat_actors.metrics import Metrics
from supervisors import ChildStartError, open_supervisor

_made: list[MemoryDB] = []  # by memory_db(): closed after each test


@pytest.fixture(autouse=True)
def _close_memory_dbs() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def memory_db(replicas: int = 0, **settings: Any) -> tuple[DBManager, MemoryDB]:
    memdb = MemoryDB()
    _made.append(memdb)
    return DBManager(memdb.settings(replicas, **settings), backend=memdb, metrics=Metrics()), memdb


async def make_table(db: DBManager) -> None:
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))


async def count(db: DBManager) -> int:
    async with db.reader(consistent=True) as session:
        return int(await session.scalar(text("SELECT COUNT(*) FROM t")))


# -- spec ---------------------------------------------------------------------------------


def test_spec_alone_is_the_primary_child_with_options_passed_through() -> None:
    db = DBManager(DBSettings(), bridge=Bridge())
    spec = db.spec("db", depends_on=("bridge",), shutdown=3.0)
    assert spec.id == "db"
    assert spec.kind == "worker"
    assert spec.depends_on == ("bridge",)
    assert spec.shutdown == 3.0


def test_spec_with_replicas_is_a_supervisor() -> None:
    settings = DBSettings.model_validate(
        {"primary": "mysql+aiomysql://u@db1/app", "replicas": ["mysql+aiomysql://u@db2/app"]}
    )
    spec = DBManager(settings, bridge=Bridge()).spec("database", depends_on=("bridge",))
    assert (spec.id, spec.kind, spec.depends_on) == ("database", "supervisor", ("bridge",))
    with pytest.raises(TypeError):
        DBManager(settings, bridge=Bridge()).spec("db", no_such_option=1)


async def test_without_a_bridge_spec_runs_its_own() -> None:
    db = DBManager(DBSettings())
    async with open_supervisor([db.spec()]) as sup:
        children = sup.which_children()
        assert [c.id for c in children] == ["db"]
        async with db.transaction() as session:
            assert await session.scalar(text("SELECT 1")) == 1


def test_sqlite_primary_ignores_replicas_with_one_warning() -> None:
    settings = DBSettings.model_validate(
        {"replicas": ["mysql+aiomysql://u@db2/app", "mysql+aiomysql://u@db3/app"]}
    )
    with structlog.testing.capture_logs() as logs:
        db = DBManager(settings)
    assert [e["event"] for e in logs] == ["db.replicas_ignored"]
    assert db.statistics().replicas == ()
    assert db.spec().kind == "supervisor"  # its own bridge + the primary


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"settings": {"primary": "x"}}, TypeError), ({"wait": -1}, ValueError)],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    # A copy: popping from the parameter itself broke a second run in the same process
    # (mutmut's stats run, then its clean run).
    kwargs = dict(kwargs)
    settings = kwargs.pop("settings", DBSettings())
    with pytest.raises(error):
        DBManager(settings, **kwargs)


async def test_bad_call_options(autojump_clock: trio.testing.MockClock) -> None:
    db, _ = memory_db()

    async def work(session: DBSession) -> None:
        pass

    async with open_supervisor([db.spec()]):
        with pytest.raises(ValueError, match="retries"):
            await db.with_transaction(lambda s: None, retries=-1)
        with pytest.raises(TypeError, match="returned an awaitable"):
            await db.with_transaction(lambda s: work(s))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout"):
            async with db.transaction(timeout=-1):
                pass


# -- availability -------------------------------------------------------------------------


async def test_not_running_is_unavailable_after_wait(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    db = DBManager(memdb.settings(), backend=memdb, wait=2.0)
    start = trio.current_time()
    with pytest.raises(DBUnavailable):
        async with db.transaction():
            pass
    assert trio.current_time() - start == pytest.approx(2.0)
    with pytest.raises(DBTimeout):  # a shorter timeout of the call wins
        async with db.reader(timeout=0.5):
            pass


async def test_unreachable_primary_fails_the_start(autojump_clock: trio.testing.MockClock) -> None:
    db, memdb = memory_db()
    memdb.primary.down = True
    with pytest.raises(ChildStartError) as caught:
        async with open_supervisor([db.spec()]):
            pass
    assert isinstance(caught.value.__cause__, DBUnavailable)


async def test_a_session_is_closed_after_its_block(autojump_clock: trio.testing.MockClock) -> None:
    db, _ = memory_db()
    async with open_supervisor([db.spec()]):
        async with db.transaction() as session:
            pass
        with pytest.raises(DBError, match="closed"):
            await session.execute(text("SELECT 1"))


async def test_nested_sessions_on_a_one_connection_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db, _ = memory_db()
    async with open_supervisor([db.spec()]), db.transaction():
        with pytest.raises(DBError, match="one session at a time"):
            async with db.writer():
                pass
        async with db.reader() as session:  # MemoryDB: what is committed, as on MySQL
            assert await session.scalar(text("SELECT 1")) == 1


async def test_nested_reader_on_sqlite_in_memory_is_refused() -> None:
    db = DBManager(DBSettings())  # one connection: the database lives in it
    async with open_supervisor([db.spec()]), db.transaction():
        with pytest.raises(DBError, match="one session at a time"):
            async with db.reader():
                pass


# -- retries ------------------------------------------------------------------------------


async def test_deadlocks_are_retried_with_backoff(autojump_clock: trio.testing.MockClock) -> None:
    db, memdb = memory_db()
    async with open_supervisor([db.spec()]):
        await make_table(db)
        calls = 0

        async def add(session: DBSession) -> str:
            nonlocal calls
            calls += 1
            await session.execute(text("INSERT INTO t VALUES (:id)"), {"id": calls})
            return "done"

        memdb.primary.fail_next(1213, times=2)
        start = trio.current_time()
        with structlog.testing.capture_logs() as logs:
            assert await db.with_transaction(add, retries=3) == "done"
        assert calls == 3
        waited = trio.current_time() - start
        assert 0.02 * 0.5 + 0.04 * 0.5 <= waited <= 0.02 * 1.5 + 0.04 * 1.5 + 0.01
        assert [e["event"] for e in logs].count("db.transaction_retry") == 2
        assert await count(db) == 1


async def test_lock_wait_timeouts_are_retried_too(autojump_clock: trio.testing.MockClock) -> None:
    db, memdb = memory_db()
    async with open_supervisor([db.spec()]):
        await make_table(db)

        def add(session: Session) -> None:
            session.execute(text("INSERT INTO t VALUES (1)"))

        memdb.primary.fail_next(1205)
        await db.with_transaction(add)
        assert await count(db) == 1


async def test_retries_run_out(autojump_clock: trio.testing.MockClock) -> None:
    db, memdb = memory_db()
    async with open_supervisor([db.spec()]):
        memdb.primary.fail_next(1213, times=10)
        with pytest.raises(DBRetryExhausted, match="3 times") as caught:
            await db.with_transaction(lambda s: s.execute(text("SELECT 1")), retries=2)
        assert "deadlock" in str(caught.value.__cause__)
        assert memdb.primary.calls >= 3


async def test_other_errors_are_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    db, memdb = memory_db()
    async with open_supervisor([db.spec()]):
        calls = 0

        async def work(session: DBSession) -> None:
            nonlocal calls
            calls += 1
            await session.execute(text("SELECT 1"))

        memdb.primary.fail_next(2013)
        with pytest.raises(DBUnavailable):
            await db.with_transaction(work)
        assert calls == 1


async def test_with_transaction_timeout_covers_every_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db, memdb = memory_db()
    async with open_supervisor([db.spec()]):
        memdb.primary.latency = 0.4
        memdb.primary.fail_next(1213, times=10)
        start = trio.current_time()
        with pytest.raises(DBTimeout):
            await db.with_transaction(lambda s: None, retries=100, timeout=1.0)
        assert trio.current_time() - start == pytest.approx(1.0)


# -- rollback -----------------------------------------------------------------------------


async def test_rollback_on_a_hung_server_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    db, memdb = memory_db()
    async with open_supervisor([db.spec()]):
        await make_table(db)

        async def hang_then_fail() -> None:
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))
                memdb.primary.pause()
                raise KeyError("boom")

        start = trio.current_time()
        with pytest.raises(KeyError), structlog.testing.capture_logs() as logs:
            await hang_then_fail()
        assert trio.current_time() - start == pytest.approx(ROLLBACK_TIMEOUT)
        assert "db.rollback_abandoned" in [e["event"] for e in logs]
        memdb.primary.resume()
        assert await count(db) == 0


async def test_commit_failure_is_raised_and_nothing_is_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db, memdb = memory_db()
    async with open_supervisor([db.spec()]):
        await make_table(db)

        async def commit_fails() -> None:
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))
                memdb.primary.fail_next(2013, on="commit")

        # The connection was lost with the COMMIT sent: nobody can tell whether it
        # happened (here it did not).
        with pytest.raises(DBCommitUnknown, match="reply never came") as caught:
            await commit_fails()
        assert isinstance(caught.value.__cause__, DBUnavailable)
        assert await count(db) == 0


async def test_timeout_while_committing_says_the_outcome_is_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db, memdb = memory_db()
    async with open_supervisor([db.spec()]):
        await make_table(db)

        async def slow_commit() -> None:
            async with db.transaction(timeout=1.0) as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))
                memdb.primary.latency = 5.0

        start = trio.current_time()
        with pytest.raises(DBCommitUnknown):
            await slow_commit()
        # The COMMIT on the wire got its grace past the timeout, then was given up.
        assert trio.current_time() - start == pytest.approx(1.0 + COMMIT_GRACE)


@pytest.mark.parametrize("unit", ["async", "sync"])
async def test_with_transaction_timeout_reports_a_commit_that_happened(
    autojump_clock: trio.testing.MockClock, unit: str
) -> None:
    db, memdb = memory_db()
    reply = [0.0]  # how long the COMMIT's reply takes

    def add_sync(s: Session, id: int) -> int:
        s.execute(text("INSERT INTO t VALUES (:id)"), {"id": id})
        memdb.primary.reply_latency = reply[0]  # from now on: the COMMIT's reply
        return id

    async def add_async(session: DBSession, id: int) -> int:
        await session.execute(text("INSERT INTO t VALUES (:id)"), {"id": id})
        memdb.primary.reply_latency = reply[0]
        return id

    fn: Any = add_sync if unit == "sync" else add_async
    async with open_supervisor([db.spec()]):
        await make_table(db)
        # The timeout lands while the COMMIT's reply is on its way: it is waited for
        # (within the grace), and the result says committed.
        reply[0] = 1.5
        assert await db.with_transaction(fn, 1, timeout=1.0) == 1
        memdb.primary.reply_latency = 0.0
        assert await count(db) == 1
        # A reply later than the grace: the outcome is unknown, never "rolled back".
        reply[0] = COMMIT_GRACE + 5.0
        with pytest.raises(DBCommitUnknown):
            await db.with_transaction(fn, 2, timeout=1.0)
        memdb.primary.reply_latency = 0.0
        assert await count(db) == 2  # it did commit


async def test_a_transaction_cancelled_while_its_commit_is_on_the_wire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    db, memdb = memory_db()
    async with open_supervisor([db.spec()]):
        await make_table(db)
        ended: list[str] = []
        with trio.move_on_after(0.5) as scope:
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))
                memdb.primary.reply_latency = 1.0  # the cancellation lands meanwhile
            ended.append("committed")  # the block says it committed
            await trio.lowlevel.checkpoint()
        assert scope.cancelled_caught
        assert ended == ["committed"]
        memdb.primary.reply_latency = 0.0
        assert await count(db) == 1


# -- metrics -----------------------------------------------------------------------------


async def test_metrics(memdb: MemoryDB, autojump_clock: trio.testing.MockClock) -> None:
    metrics = Metrics()
    db = DBManager(memdb.settings(), backend=memdb, metrics=metrics)
    sample = metrics.registry.get_sample_value
    async with open_supervisor([db.spec()]):
        await make_table(db)
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            assert sample("gochat_db_connections_active") == 1
        with pytest.raises(DBError):
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))
        await db.with_transaction(lambda s: None)
    labels = {"operation": "insert", "table": "t"}
    assert sample("gochat_db_query_duration_seconds_count", labels) == 2
    assert sample("gochat_db_query_errors_total", labels) == 1
    assert sample("gochat_db_query_duration_seconds_count", {"operation": "ddl", "table": "t"}) == 1
    assert (
        sample("gochat_db_query_duration_seconds_count", {"operation": "commit", "table": "_none"})
        == 2
    )
    assert (
        sample(
            "gochat_db_query_duration_seconds_count",
            {"operation": "transaction", "table": "_none"},
        )
        == 1
    )
    assert sample("gochat_db_connections_active") == 0


# -- SQLite (aiosqlite through the bridge) ----------------------------------------------------


async def test_sqlite_statement_cancelled_mid_flight_keeps_the_database() -> None:
    db = DBManager(DBSettings())
    slow = text(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
        "SELECT COUNT(*) FROM c"
    )
    async with open_supervisor([db.spec()]):
        await make_table(db)
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
        with trio.move_on_after(0.01) as scope:
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (2)"))
                await session.execute(slow)
        assert scope.cancelled_caught
        assert await count(db) == 1  # the in-memory database survived, row 2 rolled back


async def test_sqlite_file_is_in_wal_so_an_open_read_never_blocks_a_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wal.db"
    db = DBManager(DBSettings.model_validate({"primary": f"sqlite+aiosqlite:///{path}"}))
    async with open_supervisor([db.spec()]):
        await make_table(db)
        async with db.reader() as session:
            assert await session.scalar(text("PRAGMA journal_mode")) == "wal"
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (1), (2)"))
        # A read left open elsewhere (a statement stepped once, never reset) holds a
        # shared lock: in the rollback-journal mode the next COMMIT would wait it out.
        reader = sqlite3.connect(path, timeout=0.1)
        try:
            rows = reader.execute("SELECT id FROM t")
            assert rows.fetchone() == (1,)
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (3)"))
        finally:
            reader.close()
        assert await count(db) == 3


async def test_sqlite_in_memory_is_not_switched_to_wal() -> None:
    db = DBManager(DBSettings())
    async with open_supervisor([db.spec()]), db.reader() as session:
        assert await session.scalar(text("PRAGMA journal_mode")) == "memory"


async def test_missing_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiomysql", None)  # `import aiomysql` fails
    db = DBManager(DBSettings.model_validate({"primary": "mysql+aiomysql://u@127.0.0.1:1/x"}))
    with pytest.raises(ChildStartError) as caught:
        async with open_supervisor([db.spec()]):
            pass
    cause = caught.value.__cause__
    assert isinstance(cause, ChildStartError)
    assert isinstance(cause.__cause__, DBError)
    assert "gochat-actors[mysql]" in str(cause.__cause__)


# -- MemoryDB ----------------------------------------------------------------------------


async def test_closing_a_memory_db_closes_its_sqlite_databases() -> None:
    # Python 3.13 reports a SQLite connection left to the garbage collector
    # (ResourceWarning: unclosed database): the owner of a MemoryDB closes it.
    memdb = MemoryDB()
    connections = []
    snapshot = memdb.primary.snapshot_session
    assert snapshot is not None
    for server in (memdb.primary, memdb.replica(0), snapshot()._server):
        raw = server.engine.raw_connection()
        connections.append(raw.dbapi_connection)
        raw.close()  # back to its pool
    with memdb:
        pass
    for connection in connections:
        assert connection is not None
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            connection.execute("SELECT 1")
    memdb.close()  # again: nothing left to close
