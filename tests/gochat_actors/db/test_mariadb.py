"""Against a real MariaDB primary and replica (private servers on spare ports).

Waits are for explicit readiness (GTID positions, the manager's replica state) with a
bound, never a bare sleep, and nothing here asserts wall-clock timings: the timing rules
themselves are tested on MemoryDB under ``autojump_clock`` (test_replicas.py).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pymysql
import pytest
import structlog
import trio
from sqlalchemy import text

from gochat_actors import (
    DBCommitUnknown,
    DBError,
    DBIntegrityError,
    DBProgrammingError,
    DBTimeout,
    DBUnavailable,
)
from gochat_actors.db import DBManager, DBSession, DBSettings
from gochat_actors.metrics import Metrics
from supervisors import ChildStartError, open_supervisor
from tests._servers import HOST
from tests.gochat_actors.db._proxy import TcpProxy
from tests.gochat_actors.db.conftest import PairDB

BOUND = 20.0  # seconds any wait for the servers may take before the test fails


@asynccontextmanager
async def running(settings: DBSettings) -> AsyncIterator[DBManager]:
    metrics = Metrics()
    db = DBManager(settings, metrics=metrics)
    async with open_supervisor([db.spec()]):
        yield db
    # Every connection went back to its pool (or was dropped), none is lost.
    assert metrics.registry.get_sample_value("gochat_db_connections_active") == 0


async def wait_for(predicate: Callable[[], bool], what: str, bound: float = BOUND) -> None:
    """Poll ``predicate`` every 20 ms until it holds; fail after ``bound`` seconds."""
    with trio.move_on_after(bound):
        while not predicate():  # noqa: ASYNC110 - the manager's state has no event to wait on
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}")


def admitted(db: DBManager) -> bool:
    return db.statistics().replicas[0].admitted


async def make_notes(db: DBManager, pair_db: PairDB) -> None:
    async with trio.open_nursery() as nursery:  # its own context: no stickiness for the test
        nursery.start_soon(_create_notes, db)
    await trio.to_thread.run_sync(pair_db.pair.wait_replicated)


async def _create_notes(db: DBManager) -> None:
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE notes (id INT PRIMARY KEY, n INT NOT NULL)"))
        await session.execute(text("INSERT INTO notes VALUES (1, 0), (2, 0)"))


async def read_note_ids(db: DBManager) -> tuple[str, list[int]]:
    async with db.reader() as session:
        ids = (await session.scalars(text("SELECT id FROM notes ORDER BY id"))).all()
        return session.server, [int(i) for i in ids]


async def test_a_write_on_the_primary_is_read_from_the_replica_once_replicated(
    pair_db: PairDB,
) -> None:
    async with running(pair_db.settings(sticky_seconds=0.0)) as db:
        await wait_for(lambda: admitted(db), "the replica to be admitted")
        await make_notes(db, pair_db)
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO notes VALUES (3, 0)"))
        await trio.to_thread.run_sync(pair_db.pair.wait_replicated)
        assert await read_note_ids(db) == ("replica-0", [1, 2, 3])
        info = db.statistics().replicas[0]
        assert info.lag == 0.0


async def test_paused_replica_reads_go_elsewhere_and_none_fails(pair_db: PairDB) -> None:
    settings = pair_db.settings(sticky_seconds=0.0, probe_interval=1.0)
    async with running(settings) as db:
        await wait_for(lambda: admitted(db), "the replica to be admitted")
        await make_notes(db, pair_db)
        assert (await read_note_ids(db))[0] == "replica-0"
        served: list[tuple[str, list[int]]] = []
        stop = trio.Event()

        async def keep_reading() -> None:
            while not stop.is_set():
                served.append(await read_note_ids(db))  # any failure fails the test
                await trio.sleep(0.05)

        pair_db.pair.replica.pause()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_reading)
                # A read waits half an interval, the probe it calls half an interval more.
                await wait_for(lambda: not admitted(db), "the paused replica's ejection", 5.0)
                count = len(served)
                await wait_for(lambda: len(served) >= count + 3, "reads after the ejection")
                stop.set()
        finally:
            pair_db.pair.replica.resume()
        assert all(ids == [1, 2] for _, ids in served)
        assert served[-1][0] == "primary"
        await wait_for(lambda: admitted(db), "the resumed replica's re-admission")
        assert (await read_note_ids(db))[0] == "replica-0"


async def test_a_pool_held_to_its_last_connection_ejects_nothing(pair_db: PairDB) -> None:
    # The probes have a connection of their own: a full pool is not a server gone quiet,
    # even with a read waiting for a connection (which calls a probe every half interval).
    async with running(pair_db.settings(sticky_seconds=0.0, pool_size=1)) as db:
        await wait_for(lambda: admitted(db), "the replica to be admitted")
        await make_notes(db, pair_db)
        replica = db._replicas[0]
        served: list[tuple[str, list[int]]] = []
        async with trio.open_nursery() as nursery, db.transaction() as writing:
            await writing.execute(text("UPDATE notes SET n = n + 1 WHERE id = 1"))
            async with db.reader() as reading:
                await reading.execute(text("SELECT 1"))  # both pools are now empty
                nursery.start_soon(read_into, served, db)
                held_from = trio.current_time()
                await wait_for(
                    lambda: replica.probe_started > held_from + 2.0, "probes with the pools held"
                )
                assert admitted(db)
                assert db._primary_ok
                assert not served  # still waiting for the replica's one connection
        assert served == [("replica-0", [1, 2])]


async def read_into(served: list[tuple[str, list[int]]], db: DBManager) -> None:
    served.append(await read_note_ids(db))


async def test_sql_thread_stopped_ejects_and_restarted_readmits(pair_db: PairDB) -> None:
    async with running(pair_db.settings(probe_interval=1.0)) as db:
        await wait_for(lambda: admitted(db), "the replica to be admitted")
        pair_db.pair.replica.sql("STOP SLAVE SQL_THREAD")
        await wait_for(lambda: not admitted(db), "the ejection")
        assert "SQL thread not running" in db.statistics().replicas[0].reason
        pair_db.pair.replica.sql("START SLAVE SQL_THREAD")
        await wait_for(lambda: admitted(db), "the re-admission")


async def test_lag_beyond_max_lag_ejects_until_caught_up(pair_db: PairDB) -> None:
    async with running(pair_db.settings(probe_interval=1.0, max_lag=1.0)) as db:
        await wait_for(lambda: admitted(db), "the replica to be admitted")
        await make_notes(db, pair_db)
        blocker = pair_db.pair.replica.connect()  # the SQL thread waits for this lock
        try:
            blocker.cursor().execute("FLUSH TABLES WITH READ LOCK")
            async with db.transaction() as session:
                await session.execute(text("UPDATE notes SET n = n + 1"))
            await wait_for(lambda: not admitted(db), "the lagging replica's ejection")
            assert "lagging" in db.statistics().replicas[0].reason
            assert db.statistics().reads_on_primary
        finally:
            blocker.cursor().execute("UNLOCK TABLES")
            blocker.close()
        await wait_for(lambda: admitted(db), "the re-admission once caught up")


async def test_read_your_writes_within_sticky_seconds(pair_db: PairDB) -> None:
    settings = pair_db.settings(probe_interval=1.0, max_lag=60.0, sticky_seconds=1.0)
    async with running(settings) as db:
        await wait_for(lambda: admitted(db), "the replica to be admitted")
        await make_notes(db, pair_db)
        blocker = pair_db.pair.replica.connect()  # the replica stays admitted, but stale
        try:
            blocker.cursor().execute("FLUSH TABLES WITH READ LOCK")
            others: list[tuple[str, list[int]]] = []
            wrote = trio.Event()

            async def other() -> None:  # started before the write: another context
                await wrote.wait()
                others.append(await read_note_ids(db))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(other)
                async with db.transaction() as session:
                    await session.execute(text("INSERT INTO notes VALUES (3, 0)"))
                assert await read_note_ids(db) == ("primary", [1, 2, 3])  # our own write
                wrote.set()
            assert others == [("replica-0", [1, 2])]  # stale, as replicas may be
            await trio.sleep(1.0)  # sticky_seconds: the rule under test, not a wait
            # Past sticky_seconds the replica (admitted: max_lag is 60 s) still lacks
            # the write: the writer's context keeps reading the primary.
            assert await read_note_ids(db) == ("primary", [1, 2, 3])
        finally:
            blocker.cursor().execute("UNLOCK TABLES")
            blocker.close()
        await trio.to_thread.run_sync(pair_db.pair.wait_replicated)
        # Once a probe has seen it caught up, the replica serves this context again.
        wrote_at = db._router.last_write()
        await wait_for(lambda: db._replicas[0].has_until > wrote_at, "a caught-up probe")
        assert await read_note_ids(db) == ("replica-0", [1, 2, 3])


async def test_cancelled_transaction_leaves_nothing_committed(pair_db: PairDB) -> None:
    async with running(pair_db.settings()) as db:
        await make_notes(db, pair_db)
        with trio.move_on_after(0.3) as scope:
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO notes VALUES (3, 0)"))
                await session.execute(text("SELECT SLEEP(30)"))  # cancelled mid-statement
        assert scope.cancelled_caught
        # A fresh connection: nothing of it is visible.
        rows = pair_db.rows("SELECT COUNT(*) AS c FROM notes WHERE id = 3")
        assert rows == [{"c": 0}]
        # The statement cut off was killed on the server (KILL QUERY), not left running.
        for row in pair_db.rows("SHOW PROCESSLIST"):
            assert not str(row.get("Info") or "").startswith("SELECT SLEEP(30)"), row
        async with db.reader(consistent=True) as session:
            assert await session.scalar(text("SELECT COUNT(*) FROM notes")) == 2


async def test_deadlock_is_retried_and_both_transactions_commit(pair_db: PairDB) -> None:
    async with running(pair_db.settings()) as db:
        await make_notes(db, pair_db)
        first_locked, second_locked = trio.Event(), trio.Event()
        attempts: list[str] = []

        async def one(session: DBSession) -> None:
            attempts.append("one")
            await session.execute(text("UPDATE notes SET n = n + 1 WHERE id = 1"))
            first_locked.set()
            await second_locked.wait()
            await session.execute(text("UPDATE notes SET n = n + 1 WHERE id = 2"))

        async def two(session: DBSession) -> None:
            attempts.append("two")
            await first_locked.wait()
            await session.execute(text("UPDATE notes SET n = n + 10 WHERE id = 2"))
            second_locked.set()
            await session.execute(text("UPDATE notes SET n = n + 10 WHERE id = 1"))

        with structlog.testing.capture_logs() as logs:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(db.with_transaction, one)
                nursery.start_soon(db.with_transaction, two)
        assert len(attempts) == 3  # the deadlock victim ran twice
        retries = [e for e in logs if e["event"] == "db.transaction_retry"]
        assert len(retries) == 1
        assert "1213" in retries[0]["error"]
        rows = pair_db.rows("SELECT id, n FROM notes ORDER BY id")
        assert rows == [{"id": 1, "n": 11}, {"id": 2, "n": 11}]


async def test_bad_sql_and_duplicate_key_are_typed(pair_db: PairDB) -> None:
    async with running(pair_db.settings()) as db:
        await make_notes(db, pair_db)

        async def run(sql: str, params: dict[str, Any]) -> None:
            async with db.transaction() as session:
                await session.execute(text(sql), params)

        with pytest.raises(DBIntegrityError, match=r"\(1062\)"):
            await run("INSERT INTO notes VALUES (:id, 0)", {"id": 1})
        with pytest.raises(DBProgrammingError, match=r"\(1064\)") as caught:
            await run("UPDATE notes SET n = :n WHERE", {"n": 5})
        assert caught.value.statement == "UPDATE notes SET n = %s WHERE"
        with pytest.raises(DBProgrammingError, match=r"\(1146\)"):
            await run("SELECT * FROM no_such_table", {})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


async def test_unreachable_primary_at_start_is_unavailable() -> None:
    url = f"mysql+aiomysql://root@{HOST}:{_closed_port()}/nowhere"
    db = DBManager(DBSettings.model_validate({"primary": url}))
    with pytest.raises(ChildStartError) as caught:
        async with open_supervisor([db.spec()]):
            pass
    cause = caught.value.__cause__
    assert isinstance(cause, ChildStartError)  # db (its bridge + primary) / primary
    assert isinstance(cause.__cause__, DBUnavailable)
    assert "2003" in str(cause.__cause__)


async def test_primary_lost_is_unavailable_then_recovers(pair_db: PairDB) -> None:
    async with trio.open_nursery() as nursery:
        proxy = await nursery.start(TcpProxy(pair_db.pair.primary.port).run)
        url = f"mysql+aiomysql://root@{HOST}:{proxy.port}/{pair_db.name}"
        async with running(DBSettings.model_validate({"primary": url})) as db:
            await make_notes(db, pair_db)
            proxy.cut()
            for _ in range(2):  # a pooled connection lost, then a new one refused
                with pytest.raises(DBUnavailable):
                    async with db.transaction() as session:
                        await session.execute(text("UPDATE notes SET n = 1"))
            proxy.restore()
            async with db.transaction() as session:
                await session.execute(text("UPDATE notes SET n = 2 WHERE id = 1"))
        nursery.cancel_scope.cancel()
    assert pair_db.rows("SELECT n FROM notes WHERE id = 1") == [{"n": 2}]


async def test_replica_status_hidden_by_privileges_is_liveness_only(pair_db: PairDB) -> None:
    user = f"ro_{pair_db.name[-8:]}"
    pair_db.pair.primary.sql(f"CREATE USER '{user}'@'{HOST}'")
    pair_db.pair.primary.sql(f"GRANT SELECT ON `{pair_db.name}`.* TO '{user}'@'{HOST}'")
    try:
        await trio.to_thread.run_sync(pair_db.pair.wait_replicated)
        replica = f"mysql+aiomysql://{user}@{HOST}:{pair_db.pair.replica.port}/{pair_db.name}"
        settings = pair_db.settings(replicas=[replica], probe_interval=0.5)
        with structlog.testing.capture_logs() as logs:
            async with running(settings) as db:
                await wait_for(lambda: admitted(db), "the replica to be admitted")
                await trio.sleep(1.0)  # two more probes: still one warning
        assert [e["event"] for e in logs].count("db.replica_status_hidden") == 1
    finally:
        pair_db.pair.primary.sql(f"DROP USER IF EXISTS '{user}'@'{HOST}'")


async def test_errors_never_leak_driver_types(pair_db: PairDB) -> None:
    async with running(pair_db.settings()) as db:
        with pytest.raises(DBError) as caught:
            async with db.writer() as session:
                await session.execute(text("SELEKT 1"))
        assert not isinstance(caught.value, pymysql.MySQLError)


async def test_bytes_parameters_round_trip_and_driver_type_errors_are_db_errors(
    mariadb_url: str,
) -> None:
    value = b"\x00\xff'\"\\ \x80end"
    async with running(DBSettings.model_validate({"primary": mariadb_url})) as db:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE blobs (id INT PRIMARY KEY, b VARBINARY(64))"))
            await session.execute(text("INSERT INTO blobs VALUES (1, :b)"), {"b": value})
        async with db.reader() as session:
            found = await session.scalar(text("SELECT b FROM blobs WHERE id = 1"))
        assert found == value
        # A value the driver cannot send: its TypeError is translated, never raw.
        with pytest.raises(DBProgrammingError) as caught:
            async with db.transaction() as session:
                await session.execute(
                    text("INSERT INTO blobs VALUES (2, :b)"), {"b": {"secret-key": 1}}
                )
        assert "secret-key" not in str(caught.value)
        assert isinstance(getattr(caught.value.__cause__, "orig", None), TypeError)
        assert caught.value.statement == "INSERT INTO blobs VALUES (2, %s)"


def _leaks(secret: str, error: BaseException) -> list[str]:
    """The texts of ``error`` and its causes that hold a piece (12 chars) of ``secret``."""
    texts: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen), repr(seen.args)]
        orig = getattr(seen, "orig", None)
        if orig is not None:
            texts += [str(orig), repr(orig.args)]
        seen = seen.__cause__
    pieces = {secret[i : i + 12] for i in range(len(secret) - 11)}
    return [t for t in texts if any(p in t for p in pieces)]


async def test_values_the_server_echoes_never_reach_an_error(mariadb_url: str) -> None:
    secret = "S3cr3t-" + "x7" * 60 + "-end"  # longer than what MariaDB echoes (64/80)
    quoted = "it's-" + secret
    binary = b"\xff\xfe" + secret.encode()
    async with running(DBSettings.model_validate({"primary": mariadb_url})) as db:
        async with db.transaction() as session:
            await session.execute(
                text(
                    "CREATE TABLE secrets (id INT PRIMARY KEY, s VARCHAR(255) UNIQUE,"
                    " b VARBINARY(255) UNIQUE, n INT)"
                )
            )
            await session.execute(
                text("INSERT INTO secrets (id, s, b) VALUES (1, :s, :b), (2, :q, NULL)"),
                {"s": secret, "b": binary, "q": quoted},
            )

        async def fails(sql: str, params: Any) -> DBError:
            with pytest.raises(DBError) as caught:
                async with db.transaction() as session:
                    await session.execute(text(sql), params)
            return caught.value

        cases = {
            "duplicate, truncated to 64": await fails(
                "INSERT INTO secrets (id, s) VALUES (3, :s)", {"s": secret}
            ),
            "duplicate with a quote": await fails(
                "INSERT INTO secrets (id, s) VALUES (3, :s)", {"s": quoted}
            ),
            "duplicate bytes, echoed as hex": await fails(
                "INSERT INTO secrets (id, b) VALUES (3, :b)", {"b": binary}
            ),
            "syntax error near, truncated to 80": await fails(
                "INSERT INTO secrets (id, s) VALUES (3, :s) garbage", {"s": secret}
            ),
            "incorrect integer value": await fails(
                "INSERT INTO secrets (id, n) VALUES (3, :n)", {"n": secret}
            ),
            "a batch of 1,500 rows, the first one duplicate": await fails(
                "INSERT INTO secrets (id, s) VALUES (:id, :s)",
                [{"id": 10 + i, "s": secret if i == 0 else f"row-{i}"} for i in range(1500)],
            ),
        }
        leaks = {name: _leaks(secret, error) for name, error in cases.items()}
        assert {name: texts for name, texts in leaks.items() if texts} == {}
        # What is not a value stays readable: the key's name, the error code.
        assert "for key 's'" in str(cases["duplicate, truncated to 64"])
        assert "(1062)" in str(cases["duplicate bytes, echoed as hex"])


async def test_an_oserror_of_the_users_own_code_is_not_an_unreachable_replica(
    pair_db: PairDB,
) -> None:
    async with running(pair_db.settings(sticky_seconds=0.0)) as db:
        await wait_for(lambda: admitted(db), "the replica to be admitted")
        await make_notes(db, pair_db)
        calls: list[str] = []

        def read_then_open_a_file(s: Any) -> None:
            calls.append(str(s.execute(text("SELECT COUNT(*) FROM notes")).scalar()))
            raise FileNotFoundError(2, "No such file or directory", "/nonexistent/config")

        async with db.reader() as session:
            assert session.server == "replica-0"
            with pytest.raises(FileNotFoundError):
                await session.run_sync(read_then_open_a_file)
        assert calls == ["2"]  # run once, on the replica: not again on the primary
        assert admitted(db)  # a healthy replica stays admitted
        with pytest.raises(ConnectionRefusedError):  # an OSError of any kind, as itself
            await db.with_transaction(_refuse)


def _refuse(s: Any) -> None:
    s.execute(text("SELECT 1"))
    raise ConnectionRefusedError(111, "my own service refused")


def _update_note_waiting_at_most(pair_db: PairDB, seconds: int) -> str:
    """Another client's UPDATE of note 1, waiting ``seconds`` for its row lock."""
    conn = pair_db.pair.primary.connect(pair_db.name)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET SESSION innodb_lock_wait_timeout = {seconds}")
            try:
                cur.execute("UPDATE notes SET n = 5 WHERE id = 1")
            except pymysql.err.OperationalError as exc:
                return f"failed: {exc.args[0]}"
        return "updated"
    finally:
        conn.close()


async def test_a_statement_abandoned_mid_flight_is_killed_and_keeps_no_lock(
    pair_db: PairDB,
) -> None:
    async with running(pair_db.settings()) as db:
        await make_notes(db, pair_db)

        async def lock_then_sleep() -> None:
            async with db.transaction(timeout=0.5) as session:
                await session.execute(text("UPDATE notes SET n = n + 1 WHERE id = 1"))
                await session.execute(text("SELECT SLEEP(30)"))  # abandoned mid-flight

        with pytest.raises(DBTimeout, match="rolled back"):
            await lock_then_sleep()
        # Right after "rolled back": the row is free for another client.
        outcome = await trio.to_thread.run_sync(_update_note_waiting_at_most, pair_db, 3)
        assert outcome == "updated"
        running_queries = [
            row for row in pair_db.rows("SHOW PROCESSLIST")
            if str(row.get("Info") or "").startswith("SELECT SLEEP(30)")
        ]  # fmt: skip
        assert running_queries == []


async def _cancel_then_release(scope: trio.CancelScope, proxy: TcpProxy, after: float) -> None:
    await trio.sleep(0.2)  # the COMMIT is on the wire, its reply held by the proxy
    scope.cancel()
    await trio.sleep(after)
    proxy.release_replies()


async def test_a_cancellation_while_the_commit_is_on_the_wire_waits_for_its_reply(
    pair_db: PairDB,
) -> None:
    async with trio.open_nursery() as nursery:
        proxy = await nursery.start(TcpProxy(pair_db.pair.primary.port).run)
        url = f"mysql+aiomysql://root@{HOST}:{proxy.port}/{pair_db.name}"
        async with running(DBSettings.model_validate({"primary": url})) as db:
            await make_notes(db, pair_db)
            # The reply comes within the grace: committed, and the block ends as such
            # (the cancellation lands at the next checkpoint, after it).
            ended: list[str] = []
            with trio.CancelScope() as scope:
                async with db.transaction() as session:
                    await session.execute(text("INSERT INTO notes VALUES (3, 0)"))
                    proxy.hold_replies()
                    nursery.start_soon(_cancel_then_release, scope, proxy, 0.5)
                ended.append("committed")
                await trio.lowlevel.checkpoint()
            assert scope.cancelled_caught
            assert ended == ["committed"]
            assert pair_db.rows("SELECT id FROM notes WHERE id = 3") == [{"id": 3}]

            # No reply within the grace: the outcome is unknown, and said so (here the
            # server did commit).
            async def reply_held() -> None:
                with trio.move_on_after(0.2):
                    async with db.transaction() as session:
                        await session.execute(text("INSERT INTO notes VALUES (4, 0)"))
                        proxy.hold_replies()

            with pytest.raises(DBCommitUnknown):
                await reply_held()
            proxy.release_replies()
            assert pair_db.rows("SELECT id FROM notes WHERE id = 4") == [{"id": 4}]
        nursery.cancel_scope.cancel()


async def test_only_a_statement_left_unanswered_is_killed(
    mariadb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(DBSettings.model_validate({"primary": mariadb_url})) as db:
        server: Any = db._slot.value
        kills: list[int] = []
        kill_query = server.kill_query

        async def spy(connection_id: int) -> None:
            kills.append(connection_id)
            await kill_query(connection_id)

        monkeypatch.setattr(server, "kill_query", spy)
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE k (id INT PRIMARY KEY)"))
            await session.execute(text("INSERT INTO k VALUES (1)"))
        # The server answered (with an error): nothing runs there, the session goes on.
        async with db.transaction() as session:
            with pytest.raises(DBIntegrityError):
                await session.execute(text("INSERT INTO k VALUES (1)"))
            await session.execute(text("INSERT INTO k VALUES (2)"))
        assert kills == []
        with trio.move_on_after(0.3):  # cut off mid-statement: killed
            async with db.transaction() as session:
                await session.execute(text("SELECT SLEEP(5)"))
        assert len(kills) == 1
