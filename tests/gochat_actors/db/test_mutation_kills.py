"""Tests written for the survivors of the mutation run of ``gochat_actors/db/_session.py``
(``make mutants MODULE=gochat_actors/db/_session.py``; see docs/testing.md, "Mutation
runs", and docs/mutants.md). Each test names the mutants it kills; each was seen failing
with its mutants and passing without, with
``scripts/mutants.py gochat_actors/db/_session.py --tests ... --check "" MUTANT...``.

MemoryDB under ``autojump_clock``: no sleeps in real time, no timing bounds.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
import trio
import trio.testing
from sqlalchemy import text
from sqlalchemy.orm import Session

from gochat_actors import DBCommitUnknown, DBError, DBTimeout, DBUnavailable
from gochat_actors.db import DBManager, DBSession, DBSettings, MemoryDB
from gochat_actors.db._protocol import COMMIT_GRACE
from gochat_actors.db._sqlalchemy import SQLAlchemyServer
from supervisors import open_supervisor
from tests.gochat_actors.db.test_replicas import (
    INTERVAL,
    admitted,
    insert,
    note_model,
    read_ids,
    running,
    wait_until,
)


def _active(db: DBManager) -> float | None:
    metrics = db._metrics
    assert metrics is not None
    return metrics.registry.get_sample_value("gochat_db_connections_active")


def _wrote(session: DBSession) -> object:
    return session.wrote  # not narrowed by mypy from one assert to the next


# -- what counts as a write ------------------------------------------------------------------


async def test_add_is_a_write_at_once_in_a_transaction_and_never_in_a_reader(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``DBSession._note_write`` 1 (a reader's ``add`` counted, a transaction's
    not), 2 (``None``: ``wrote`` says None) and 3 (never counted before a flush)."""
    Note = note_model()
    async with running(memdb) as (db, _, _):
        async with db.transaction() as session:
            assert _wrote(session) is False
            session.add(Note(id=5, body="y"))
            assert _wrote(session) is True
        async with db.transaction() as session:
            session.add_all([Note(id=6, body="z")])
            assert _wrote(session) is True
        async with db.reader() as session:
            session.add(Note(id=7, body="never written"))
            assert _wrote(session) is False
            session.sa_session.expunge_all()


async def test_a_sync_with_transaction_makes_its_context_read_its_own_write(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``run_unit`` 33, 36, 37 and ``DBSession._committed`` 26: a sync function's
    statements are not seen as writes by the session (they run in one crossing), so its
    commit must mark the context sticky itself; else the next read goes to the stale
    replica."""

    def add(s: Session, id: int) -> int:
        s.execute(text("INSERT INTO notes VALUES (:id, 'x')"), {"id": id})
        return id

    async with running(memdb) as (db, _, _):
        memdb.replica(0).delay = 10.0
        assert await db.with_transaction(add, 1) == 1
        assert await read_ids(db) == ("primary", [1])


# -- read failover ---------------------------------------------------------------------------


async def test_a_read_failover_is_logged_with_its_origin_target_and_reason(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``DBSession._call`` 8, 9, 31 (the reason of a failover from a replica
    ejected before the call) and ``DBSession._failover`` 7, 9, 10, 11, 13-17 (the
    ``db.read_failover`` event and its fields)."""
    async with running(memdb, sticky_seconds=0.0) as (db, _, _):
        await insert(db, 1)
        memdb.replica(0).catch_up()
        with structlog.testing.capture_logs() as logs:
            async with db.reader() as session:
                assert session.server == "replica-0"
                memdb.replica(0).stop_replication()  # the next probe ejects it
                await wait_until(lambda: admitted(db) == [], within=2 * INTERVAL)
                assert (await session.scalars(text("SELECT id FROM notes"))).all() == [1]
                assert session.server == "primary"
            memdb.replica(0).start_replication()
            await wait_until(lambda: admitted(db) == ["replica-0"], within=10 * INTERVAL)
            async with db.reader() as session:
                assert session.server == "replica-0"
                memdb.replica(0).down = True  # the call fails there: ejected, then failover
                assert (await session.scalars(text("SELECT id FROM notes"))).all() == [1]
                assert session.server == "primary"
        failovers = [e for e in logs if e["event"] == "db.read_failover"]
        assert [(e["origin"], e["target"], e["log_level"]) for e in failovers] == [
            ("replica-0", "primary", "info"),
            ("replica-0", "primary", "info"),
        ]
        assert failovers[0]["reason"] == "ejected"
        assert failovers[1]["reason"].startswith("read failed: ")


# -- rollback, release, drop -----------------------------------------------------------------


async def test_a_reader_on_a_replica_leaves_no_call_in_flight_there(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``DBSession._release`` 7 (the rollback's scope not registered on the
    replica: ``call_ended`` cannot remove it, and an ejection would cancel ``None``)."""
    async with running(memdb, sticky_seconds=0.0) as (db, _, _):
        async with db.reader() as session:
            await session.scalar(text("SELECT COUNT(*) FROM notes"))
            assert session.server == "replica-0"
        assert db._router.replicas[0].inflight == {}
        memdb.replica(0).stop_replication()
        await wait_until(lambda: admitted(db) == [], within=2 * INTERVAL)
        assert await read_ids(db) == ("primary", [])


async def test_a_session_dropped_in_a_failover_gives_its_connection_back(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``DBSession._drop`` 1, 2 (the session left on the ejected replica never
    discarded: its connection stays counted active, its transaction open). Its call
    ran there and its reply was on the way when the replica was ejected."""
    async with running(memdb, sticky_seconds=0.0) as (db, _, _):
        await insert(db, 1)
        memdb.replica(0).catch_up()
        memdb.replica(0).reply_latency = 10.0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_replication_soon, memdb)
            assert await read_ids(db) == ("primary", [1])
        assert admitted(db) == []
        assert _active(db) == 0


async def _stop_replication_soon(memdb: MemoryDB) -> None:
    await trio.sleep(0.1)  # the read on replica-0 waits for its reply meanwhile
    memdb.replica(0).stop_replication()


async def test_a_rollback_that_fails_is_logged_and_the_error_kept(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``DBSession._release`` 13, 14, 15 (the ``db.rollback_failed`` event and its
    fields)."""
    async with running(memdb, replicas=0) as (db, _, _):
        with structlog.testing.capture_logs() as logs, pytest.raises(KeyError):  # noqa: PT012
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO notes VALUES (1, 'x')"))
                memdb.primary.down = True  # the rollback fails (can't connect)
                raise KeyError("boom")
        memdb.primary.down = False
        failed = [e for e in logs if e["event"] == "db.rollback_failed"]
        assert len(failed) == 1
        assert failed[0]["server"] == "primary"
        assert failed[0]["log_level"] == "warning"
        assert "2003" in failed[0]["error"]
        assert await read_ids(db) == ("primary", [])


# -- with_transaction ------------------------------------------------------------------------


async def test_a_failing_rollback_does_not_hide_the_functions_error(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``_unit`` 16 (``contextlib.suppress(None)``: the rollback's error then
    turns into a TypeError instead of being suppressed)."""

    class Mine(Exception):
        pass

    def fails(s: Session) -> None:
        s.execute(text("INSERT INTO notes VALUES (1, 'x')"))

        def broken() -> None:
            raise OSError("connection gone")

        s.rollback = broken  # type: ignore[method-assign]
        raise Mine

    async with running(memdb, replicas=0) as (db, _, _):
        with pytest.raises(Mine):
            await db.with_transaction(fails)
        assert await read_ids(db) == ("primary", [])


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("transaction", "transaction timed out after 1.5s; rolled back"),
        ("writer", "writer session timed out after 1.5s; rolled back"),
        ("reader", "reader session timed out after 1.5s; rolled back"),
    ],
)
async def test_a_timeout_says_which_session_and_how_long(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock, mode: str, message: str
) -> None:
    """Kills ``timed_out`` 1-7 (the message of :class:`DBTimeout`)."""
    async with running(memdb, replicas=0) as (db, _, _):
        opened: Any = getattr(db, mode)(timeout=1.5)
        with pytest.raises(DBTimeout) as caught:  # noqa: PT012
            async with opened as session:
                await session.scalar(text("SELECT COUNT(*) FROM notes"))
                await trio.sleep(5.0)
        assert str(caught.value) == message


async def test_with_transaction_returns_its_result_when_an_error_follows_the_commit(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``_unit`` 10 (the result not kept for an error after the COMMIT is done:
    the call returned None) and ``DBSession._committed`` 3 (that commit not marking the
    context sticky). Closing the session fails after the commit: committed, so the
    result is returned, not the error."""
    from sqlalchemy.exc import OperationalError

    def add(s: Session, id: int) -> int:
        s.execute(text("INSERT INTO notes VALUES (:id, 'x')"), {"id": id})

        def close() -> None:
            raise OperationalError("close", None, Exception("connection reset"))

        s.close = close  # type: ignore[method-assign]
        return id

    async with running(memdb) as (db, _, _):
        memdb.replica(0).delay = 10.0  # its own write is read back: from the primary
        assert await db.with_transaction(add, 7) == 7
        assert await read_ids(db) == ("primary", [7])


async def test_a_sync_with_transaction_whose_commit_is_unknown_is_read_back_from_the_primary(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``DBSession._committed`` 7: a COMMIT whose outcome is unknown may have
    happened, so the context reads its own (maybe) write from the primary."""

    def add(s: Session, id: int) -> int:
        s.execute(text("INSERT INTO notes VALUES (:id, 'x')"), {"id": id})
        memdb.primary.reply_latency = COMMIT_GRACE + 5.0  # the COMMIT's reply
        return id

    async with running(memdb) as (db, _, _):
        memdb.replica(0).delay = 10.0
        with pytest.raises(DBCommitUnknown):
            await db.with_transaction(add, 1, timeout=1.0)
        memdb.primary.reply_latency = 0.0
        assert await read_ids(db) == ("primary", [1])  # it did commit


# -- a COMMIT with no reply ------------------------------------------------------------------


async def test_a_commit_whose_reply_never_came_says_why_and_logs_it(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``DBSession._committed`` 8-11, 13-22, 24, 25: the message of
    :class:`DBCommitUnknown` (cancelled, or the connection's error) and the
    ``db.commit_outcome_unknown`` event with its fields."""
    unknown = "the transaction may or may not have committed"
    async with running(memdb, replicas=0) as (db, _, _):
        with structlog.testing.capture_logs() as logs:
            with pytest.raises(DBCommitUnknown) as lost:  # noqa: PT012
                async with db.transaction() as session:
                    await session.execute(text("INSERT INTO notes VALUES (1, 'x')"))
                    memdb.primary.fail_next(2013, on="commit")
            with pytest.raises(DBCommitUnknown) as cancelled:  # noqa: PT012
                async with db.transaction(timeout=1.0) as session:
                    await session.execute(text("INSERT INTO notes VALUES (2, 'x')"))
                    memdb.primary.latency = 5.0
        memdb.primary.latency = 0.0
        cause = lost.value.__cause__
        assert isinstance(cause, DBUnavailable)
        assert str(lost.value) == (
            f"the COMMIT was sent to primary but its reply never came ({cause}): {unknown}"
        )
        assert str(cancelled.value) == (
            f"the COMMIT was sent to primary but its reply never came (cancelled): {unknown}"
        )
        events = [e for e in logs if e["event"] == "db.commit_outcome_unknown"]
        assert [(e["server"], e["log_level"]) for e in events] == [
            ("primary", "warning"),
            ("primary", "warning"),
        ]
        assert events[0]["error"] == repr(cause)
        assert events[1]["error"].startswith("Cancelled(")


# -- how a block ends ------------------------------------------------------------------------


async def test_a_failed_rollback_never_hides_why_the_commit_was_not_sent(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``DBSession._end`` 42, 43: a block ending with a cancellation pending sends
    no COMMIT and rolls back; when that rollback fails too, the cancellation still
    ends the block (the rollback's error is logged, not raised in its place)."""
    async with running(memdb, replicas=0) as (db, _, _):
        with structlog.testing.capture_logs() as logs, trio.CancelScope() as scope:
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO notes VALUES (1, 'x')"))
                memdb.primary.down = True  # the rollback fails
                scope.cancel()
        assert scope.cancelled_caught
        assert "db.rollback_failed" in [e["event"] for e in logs]
        memdb.primary.down = False
        assert await read_ids(db) == ("primary", [])


async def test_a_session_whose_server_stopped_under_it_never_looks_committed() -> None:
    """Kills ``DBSession._end`` 2, 3, 4: a transaction whose server closed under it (it
    was rolled back) raises DBUnavailable at the block's end instead of ending as if
    committed; a reader in the same case ends quietly. SQLite in memory, on SQLAlchemy
    (a MemoryDB session is never lost)."""
    db = DBManager(DBSettings())
    async with open_supervisor([db.spec()]):
        server = db._slot.value
        assert isinstance(server, SQLAlchemyServer)
        errors: list[tuple[str, BaseException]] = []
        entered = [trio.Event(), trio.Event()]
        go_on = trio.Event()

        async def user(index: int, mode: str) -> None:
            try:
                opened: Any = getattr(db, mode)()
                async with opened as session:
                    if mode == "reader":
                        await session.scalar(text("SELECT 1"))
                    else:
                        await session.execute(text("CREATE TABLE t (id INTEGER)"))
                    entered[index].set()
                    await go_on.wait()
            except DBError as exc:
                errors.append((mode, exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(user, 0, "transaction")
            await entered[0].wait()
            with trio.CancelScope(shield=True) as spent:
                spent.cancel()  # no budget: the session in flight is closed under it
                await server.aclose()
            go_on.set()
        assert [(mode, type(e)) for mode, e in errors] == [("transaction", DBUnavailable)]
        assert "rolled back" in str(errors[0][1])

    db = DBManager(DBSettings())
    async with open_supervisor([db.spec()]):
        server = db._slot.value
        assert isinstance(server, SQLAlchemyServer)
        errors.clear()
        go_on = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(user, 1, "reader")
            await entered[1].wait()
            with trio.CancelScope(shield=True) as spent:
                spent.cancel()
                await server.aclose()
            go_on.set()
        assert errors == []


@pytest.mark.parametrize("timeout", [True, "1", -0.5])
async def test_a_timeout_must_be_a_number_of_seconds(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock, timeout: Any
) -> None:
    """Kills ``deadline_of`` 3 (a bool accepted, a string a TypeError)."""
    async with running(memdb, replicas=0) as (db, _, _):
        with pytest.raises(ValueError, match="timeout must be a number of seconds >= 0"):
            async with db.transaction(timeout=timeout):
                pass


async def test_a_timeout_of_zero_is_valid_and_times_out_at_once(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``deadline_of`` 6 (0 refused as a timeout)."""
    async with running(memdb, replicas=0) as (db, _, _):
        with pytest.raises(DBTimeout, match="after 0s"):
            async with db.transaction(timeout=0) as session:
                await session.scalar(text("SELECT 1"))


async def test_a_rollback_abandoned_on_a_hung_server_is_logged_with_its_server(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``DBSession._release`` 25, 27 (the ``db.rollback_abandoned`` event's
    server)."""
    async with running(memdb, replicas=0) as (db, _, _):
        with structlog.testing.capture_logs() as logs, pytest.raises(KeyError):  # noqa: PT012
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO notes VALUES (1, 'x')"))
                memdb.primary.pause()  # its rollback hangs: abandoned
                raise KeyError("boom")
        memdb.primary.resume()
        abandoned = [e for e in logs if e["event"] == "db.rollback_abandoned"]
        assert [(e["server"], e["log_level"]) for e in abandoned] == [("primary", "warning")]


async def test_a_session_refused_by_a_closing_server_gives_its_turn_back() -> None:
    """Kills ``DBSession._open_on`` 8 (a server that refused the session because it is
    closing tried again for ever) and ``DBSession._attach`` 22 (the server's turn, taken
    for the session, not given back when the session could not be opened). SQLite in
    memory, on SQLAlchemy: one session at a time."""
    db = DBManager(DBSettings())
    async with open_supervisor([db.spec()]):
        server = db._slot.value
        assert isinstance(server, SQLAlchemyServer)
        assert server.exclusive is not None
        with trio.CancelScope(shield=True) as spent:
            spent.cancel()
            await server.aclose()
        with trio.fail_after(5), pytest.raises(DBUnavailable, match="is closing"):
            async with db.transaction():
                pass
        assert not server.exclusive.locked()


async def test_statements_are_timed_and_traced_with_their_operation_and_table(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``DBSession._io`` 17, 18, 19 (the statement span's attributes), 59 (spans
    on: the span never entered, so never ended) and 61 (spans on: the statement not
    timed)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gochat_actors import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        async with running(memdb, replicas=0) as (db, _, _):
            await insert(db, 1)
    finally:
        tracing.disable()
        provider.shutdown()
    [span] = [s for s in exporter.get_finished_spans() if s.name == "insert notes"]
    assert span.attributes is not None
    assert dict(span.attributes) == {
        "db.system": "mysql",
        "db.operation.name": "insert",
        "db.collection.name": "notes",
    }
    metrics = db._metrics
    assert metrics is not None
    labels = {"operation": "insert", "table": "notes"}
    count = metrics.registry.get_sample_value("gochat_db_query_duration_seconds_count", labels)
    assert count == 1


async def test_a_failover_never_goes_back_to_a_replica_it_left(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``DBSession._failover`` 1, 6 (the replicas a read session left are not
    excluded): it leaves replica-0, then replica-1; replica-0 is admitted again
    meanwhile, yet the session goes on on the primary, not back to replica-0."""
    async with running(memdb, replicas=2, sticky_seconds=0.0) as (db, _, _):
        await insert(db, 1)
        for i in range(2):
            memdb.replica(i).catch_up()
        with structlog.testing.capture_logs() as logs:
            async with db.reader() as session, trio.open_nursery() as nursery:
                first = session.server
                other = "replica-1" if first == "replica-0" else "replica-0"
                index = {"replica-0": 0, "replica-1": 1}
                memdb.replica(index[first]).stop_replication()  # ejected before the call
                await wait_until(lambda: admitted(db) == [other], within=2 * INTERVAL)
                memdb.replica(index[other]).statement_latency = 30.0  # the read waits there

                async def meanwhile() -> None:
                    memdb.replica(index[first]).start_replication()
                    await wait_until(lambda: first in admitted(db), within=10 * INTERVAL)
                    memdb.replica(index[other]).stop_replication()  # ejected mid-read

                nursery.start_soon(meanwhile)
                assert (await session.scalars(text("SELECT id FROM notes"))).all() == [1]
                assert session.server == "primary"
        targets = [(e["origin"], e["target"]) for e in logs if e["event"] == "db.read_failover"]
        assert targets == [(first, other), (other, "primary")]


async def test_a_writer_call_cut_off_after_its_commit_returns_its_result() -> None:
    """Kills ``_then_commit`` 5 (the result not kept for an error after the COMMIT is
    done: the call returned None). SQLite in memory, on SQLAlchemy: its server closes
    while the call runs (as ``aclose()`` does with no budget left); the call commits
    first (one session at a time: never cut mid-call), then raises DBUnavailable, which
    after a done COMMIT means committed: the result is returned."""
    db = DBManager(DBSettings())
    async with open_supervisor([db.spec()]):
        server = db._slot.value
        assert isinstance(server, SQLAlchemyServer)

        def add(s: Session, id: int) -> int:
            s.execute(text("CREATE TABLE t (id INTEGER)"))
            s.execute(text("INSERT INTO t VALUES (:id)"), {"id": id})
            for handle in list(server._handles):
                handle._kill("database server primary stopped while this session was in use")
            return id

        got: list[int] = []
        with pytest.raises(DBUnavailable):  # at the block's end: lost
            async with db.writer() as session:
                got.append(await session.run_sync(add, 7))
        assert got == [7]
