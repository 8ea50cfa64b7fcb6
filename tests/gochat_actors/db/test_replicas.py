"""Replica probes, ejection and re-admission, failover and stickiness, on MemoryDB under
``autojump_clock``: every timing rule in milliseconds of real time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from sqlalchemy import Integer, String, text
from sqlalchemy.orm import DeclarativeBase, mapped_column

from gochat_actors import DBTimeout, DBUnavailable
from gochat_actors.db import DBManager, DBSettings, MemoryDB
from gochat_actors.db._router import READMIT_PROBES
from gochat_actors.metrics import Metrics
from supervisors import Event, Health, HealthChanged, Supervisor, open_supervisor

INTERVAL = 1.0  # probe_interval of these tests; probes time out after INTERVAL / 2
READMIT = READMIT_PROBES + 1  # probe intervals an ejected replica takes to come back


@asynccontextmanager
async def running(
    memdb: MemoryDB, replicas: int = 1, **settings: Any
) -> AsyncIterator[tuple[DBManager, Supervisor, list[Event]]]:
    fields: dict[str, Any] = {"probe_interval": INTERVAL, "max_lag": 5.0, "sticky_seconds": 2.0}
    db = DBManager(
        memdb.settings(replicas=replicas, **{**fields, **settings}),
        backend=memdb,
        metrics=Metrics(),
    )
    events: list[Event] = []
    async with open_supervisor([db.spec()]) as sup:
        sup.subscribe(events.append)
        async with trio.open_nursery() as nursery:  # its own context: no stickiness here
            nursery.start_soon(create_table, db)
        for i in range(replicas):
            memdb.replica(i).catch_up()  # every replica has the table
        yield db, sup, events


async def create_table(db: DBManager) -> None:
    async with db.writer() as session:
        await session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))


async def insert(db: DBManager, id: int) -> None:
    async with db.transaction() as session:
        await session.execute(text("INSERT INTO notes VALUES (:id, 'x')"), {"id": id})


async def read_ids(db: DBManager, **options: Any) -> tuple[str, list[int]]:
    async with db.reader(**options) as session:
        ids = (await session.scalars(text("SELECT id FROM notes ORDER BY id"))).all()
        return session.server, [int(i) for i in ids]


def note_model() -> Any:
    """An ORM class on the ``notes`` table (a fresh one: its own registry)."""

    class Base(DeclarativeBase):
        pass

    class Note(Base):
        __tablename__ = "notes"
        id = mapped_column(Integer, primary_key=True)
        body = mapped_column(String(100))

    return Note


def admitted(db: DBManager) -> list[str]:
    return [r.name for r in db.statistics().replicas if r.admitted]


async def wait_until(predicate: Any, *, within: float, step: float = 0.01) -> float:
    """Poll ``predicate`` on the trio clock; return how long it took."""
    start = trio.current_time()
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - state without an event: poll the fake clock
            await trio.sleep(step)
    return trio.current_time() - start


def healthy_gauge(db: DBManager, name: str) -> float | None:
    metrics = db._metrics
    assert metrics is not None
    return metrics.registry.get_sample_value("gochat_db_replica_healthy", {"replica": name})


# -- probes ---------------------------------------------------------------------------


async def test_healthy_replicas_are_admitted_at_start_and_serve_reads(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, replicas=2) as (db, _, _):
        assert admitted(db) == ["replica-0", "replica-1"]
        servers = {(await read_ids(db))[0] for _ in range(4)}
        assert servers == {"replica-0", "replica-1"}  # round robin
        assert healthy_gauge(db, "replica-1") == 1


async def test_a_write_is_read_back_from_the_replica_once_replicated(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, sticky_seconds=0.0) as (db, _, _):
        memdb.replica(0).delay = 3.0
        await insert(db, 1)
        assert await read_ids(db) == ("replica-0", [])  # not there yet
        await trio.sleep(3.0)
        assert await read_ids(db) == ("replica-0", [1])


async def test_lagging_replica_is_ejected_then_readmitted(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, max_lag=2.0, sticky_seconds=0.0) as (db, _, events):
        replica = memdb.replica(0)
        replica.delay = 6.0
        await insert(db, 1)
        took = await wait_until(lambda: not admitted(db), within=10)
        assert 2.0 < took <= 2.0 + INTERVAL + 0.01  # the first probe that sees lag > 2 s
        assert await read_ids(db) == ("primary", [1])
        info = db.statistics().replicas[0]
        assert "lagging" in info.reason
        assert healthy_gauge(db, "replica-0") == 0
        took = await wait_until(lambda: admitted(db) == ["replica-0"], within=10)
        # Caught up at 6 s: READMIT_PROBES passing probes in a row re-admit it.
        assert took <= 6.0 - 2.0 + READMIT_PROBES * INTERVAL
        assert await read_ids(db) == ("replica-0", [1])
        health = [(e.status, e.reason) for e in events if isinstance(e, HealthChanged)]
        assert health[0][0] is Health.DEGRADED
        assert "lagging" in health[0][1]
        assert health[-1] == (Health.OK, "")


async def test_replication_stopped_ejects_and_restarted_readmits(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb) as (db, _, _):
        memdb.replica(0).stop_replication()
        took = await wait_until(lambda: not admitted(db), within=10)
        assert took <= INTERVAL + 0.01
        assert "SQL thread not running" in db.statistics().replicas[0].reason
        memdb.replica(0).start_replication()
        took = await wait_until(lambda: admitted(db) == ["replica-0"], within=10)
        assert took <= READMIT_PROBES * INTERVAL + 0.01  # that many passing probes in a row


async def test_paused_replica_is_ejected_and_reads_in_flight_go_elsewhere(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, replicas=1, sticky_seconds=0.0) as (db, _, _):
        await insert(db, 1)
        probes = memdb.replica(0).calls
        await wait_until(lambda: memdb.replica(0).calls > probes, within=INTERVAL * 2, step=0.001)
        # Paused just after a probe passed: the next one is a whole interval away.
        served: list[tuple[str, list[int]]] = []

        async def reader() -> None:
            for _ in range(40):
                served.append(await read_ids(db))
                await trio.sleep(0.05)

        paused_at = trio.current_time()
        memdb.replica(0).pause()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            took = await wait_until(lambda: not admitted(db), within=10)
        # The first read waits half an interval, the probe it calls half an interval more.
        assert took <= INTERVAL + 0.01
        assert len(served) == 40  # no read failed
        assert all(ids == [1] for _, ids in served)
        ejected_at = paused_at + took
        assert served[-1][0] == "primary"
        assert {server for server, _ in served} == {"primary"}  # the first read hung, then moved
        assert trio.current_time() > ejected_at
        memdb.replica(0).resume()
        await wait_until(lambda: admitted(db) == ["replica-0"], within=READMIT * INTERVAL)


async def test_a_long_read_calls_extra_probes_and_stays_on_its_healthy_replica(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, replicas=1, sticky_seconds=0.0) as (db, _, events):
        await insert(db, 1)
        await wait_until(lambda: admitted(db) == ["replica-0"], within=INTERVAL * 2)
        replica = memdb.replica(0)
        replica.statement_latency = INTERVAL * 3
        calls, started = replica.calls, trio.current_time()
        assert await read_ids(db) == ("replica-0", [1])
        took = trio.current_time() - started
        probes = replica.calls - calls - 1  # less the read itself
        # While the read waits, a probe every half interval (not one per interval), each
        # answered at once: no ejection, the read ends where it started.
        assert took == pytest.approx(INTERVAL * 3)
        assert 6 <= probes <= 8
        assert admitted(db) == ["replica-0"]
        assert not [e for e in events if isinstance(e, HealthChanged) and e.status != Health.OK]


async def test_unreachable_replica_fails_over_at_once(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, sticky_seconds=0.0) as (db, _, _):
        await trio.sleep(INTERVAL / 4)  # between two probes
        memdb.replica(0).down = True
        start = trio.current_time()
        assert await read_ids(db) == ("primary", [])
        assert trio.current_time() - start < 0.01  # no waiting for a probe
        assert not admitted(db)
        assert "read failed" in db.statistics().replicas[0].reason
        memdb.replica(0).down = False
        await wait_until(lambda: admitted(db) == ["replica-0"], within=READMIT * INTERVAL)


async def test_failover_prefers_another_healthy_replica(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, replicas=2, sticky_seconds=0.0) as (db, _, _):
        memdb.replica(0).down = True
        memdb.replica(1).down = False
        servers = [(await read_ids(db))[0] for _ in range(3)]
        assert servers == ["replica-1"] * 3


async def test_no_healthy_replica_reads_the_primary_and_logs_it_once(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, replicas=2, sticky_seconds=0.0) as (db, _, _):
        with structlog.testing.capture_logs() as logs:
            memdb.replica(0).stop_replication()
            memdb.replica(1).stop_replication()
            await wait_until(lambda: not admitted(db), within=10)
            for _ in range(5):
                assert (await read_ids(db))[0] == "primary"
                await trio.sleep(INTERVAL)  # more probes, still failing
            assert db.statistics().reads_on_primary
            memdb.replica(1).start_replication()
            await wait_until(lambda: admitted(db) == ["replica-1"], within=10)
        names = [entry["event"] for entry in logs]
        assert names.count("db.reads_on_primary") == 1
        assert names.count("db.reads_on_replicas") == 1
        assert names.count("db.replica_ejected") == 2


async def test_reads_on_primary_logged_at_start_when_no_replica_answers(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    memdb.replica(0).down = True
    with structlog.testing.capture_logs() as logs:
        async with running(memdb) as (db, _, _):
            assert (await read_ids(db))[0] == "primary"
            await trio.sleep(3 * INTERVAL)
    assert [e["event"] for e in logs].count("db.reads_on_primary") == 1


# -- stickiness --------------------------------------------------------------------------


async def test_read_your_writes_for_sticky_seconds(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    async with running(memdb, sticky_seconds=2.0, max_lag=20.0) as (db, _, _):
        memdb.replica(0).delay = 10.0
        assert (await read_ids(db))[0] == "replica-0"
        await insert(db, 1)
        assert await read_ids(db) == ("primary", [1])
        await trio.sleep(2.1)  # past sticky_seconds, the replica (admitted) still stale:
        assert await read_ids(db) == ("primary", [1])  # never read back stale
        took = await wait_until(lambda: memdb.replica(0).lag() == 0.0, within=20)
        assert took <= 10.0
        await trio.sleep(INTERVAL + 1.0)  # a probe has seen it caught up
        assert await read_ids(db) == ("replica-0", [1])


async def test_read_your_writes_holds_with_the_default_settings(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # sticky_seconds (2 s) < max_lag (5 s): a replica 3 s behind is admitted, and must
    # still not serve the writer's context a read without its write.
    defaults = DBSettings()
    sticky, max_lag = defaults.sticky_seconds, defaults.max_lag
    async with running(memdb, sticky_seconds=sticky, max_lag=max_lag) as (db, _, _):
        memdb.replica(0).delay = 3.0
        await insert(db, 1)
        for _ in range(30):  # every 0.1 s for 3 s: each read has the write
            server, ids = await read_ids(db)
            assert ids == [1], (server, trio.current_time())
            await trio.sleep(0.1)
        assert admitted(db) == ["replica-0"]


async def test_read_your_writes_after_a_writer_block_that_raised(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb) as (db, _, _):
        memdb.replica(0).delay = 10.0

        async def write_then_fail() -> None:
            async with db.writer() as session:
                await session.execute(text("INSERT INTO notes VALUES (1, 'x')"))  # committed
                raise KeyError("after the write")

        with pytest.raises(KeyError):
            await write_then_fail()
        assert await read_ids(db) == ("primary", [1])

        async def write_then_time_out() -> None:
            async with db.writer(timeout=1.0) as session:
                await session.execute(text("INSERT INTO notes VALUES (2, 'x')"))
                await trio.sleep(5.0)

        async with trio.open_nursery() as nursery:  # a fresh context: nothing sticky yet
            nursery.start_soon(_expect_own_write_after_timeout, db, write_then_time_out)


async def _expect_own_write_after_timeout(db: DBManager, write: Any) -> None:
    with pytest.raises(DBTimeout):
        await write()
    assert await read_ids(db) == ("primary", [1, 2])


async def test_orm_changes_flushed_by_a_select_count_as_writes(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    Note = note_model()

    async with running(memdb) as (db, _, _):
        async with trio.open_nursery() as nursery:  # its own context
            nursery.start_soon(insert, db, 1)
        await wait_until(lambda: memdb.replica(0).lag() == 0.0, within=5)
        memdb.replica(0).delay = 10.0
        async with db.transaction() as session:
            note = await session.get(Note, 1)  # a read
            assert note is not None
            note.body = "changed"  # no I/O: pending until the next statement's autoflush
            await session.execute(text("SELECT COUNT(*) FROM notes"))
            assert session.wrote
        async with db.reader() as session:
            body = await session.scalar(text("SELECT body FROM notes WHERE id = 1"))
            assert (session.server, body) == ("primary", "changed")


async def test_stickiness_is_per_context(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    async with running(memdb, sticky_seconds=2.0) as (db, _, _):
        seen: list[str] = []
        wrote = trio.Event()

        async def other_task() -> None:  # started before the write: not sticky
            await wrote.wait()
            seen.append((await read_ids(db))[0])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_task)
            await trio.testing.wait_all_tasks_blocked()
            await insert(db, 1)
            wrote.set()
            seen.append((await read_ids(db))[0])
        assert sorted(seen) == ["primary", "replica-0"]


async def test_consistent_reads_and_read_only_sessions(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, sticky_seconds=2.0) as (db, _, _):
        assert (await read_ids(db, consistent=True))[0] == "primary"
        async with db.transaction() as session:  # a SELECT-only transaction is not a write
            await session.execute(text("SELECT 1"))
            assert not session.wrote
        assert (await read_ids(db))[0] == "replica-0"


async def test_no_stickiness_when_sticky_seconds_is_zero(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, sticky_seconds=0.0) as (db, _, _):
        await insert(db, 1)
        assert (await read_ids(db))[0] == "replica-0"


# -- the primary -------------------------------------------------------------------------


async def test_primary_health_follows_its_probe(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock
) -> None:
    async with running(memdb, replicas=0) as (_, sup, events):
        memdb.primary.pause()
        await trio.sleep(INTERVAL * 2)
        assert not sup.health().ready
        memdb.primary.resume()
        await trio.sleep(INTERVAL * 2)
        assert sup.health().ready
    statuses = [e.status for e in events if isinstance(e, HealthChanged)]
    assert statuses == [Health.FAILED, Health.OK]


@pytest.mark.parametrize("replicas", [0, 2])
async def test_engines_closed_and_slot_emptied_on_shutdown(
    memdb: MemoryDB, autojump_clock: trio.testing.MockClock, replicas: int
) -> None:
    async with running(memdb, replicas=replicas) as (db, _, _):
        assert db.statistics().primary_running
    stats = db.statistics()
    assert not stats.primary_running
    assert not any(r.admitted for r in stats.replicas)


# -- failover and a session's snapshot -----------------------------------------------------


async def test_a_read_session_fails_over_only_before_it_returned_anything(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    Note = note_model()

    async with running(memdb, sticky_seconds=0.0) as (db, _, _):
        await insert(db, 1)
        memdb.replica(0).catch_up()
        # Its first call fails over: nothing was seen yet, no snapshot to mix.
        memdb.replica(0).down = True
        async with db.reader() as session:
            note = await session.get(Note, 1)
            assert session.server == "primary"
            assert note is not None
        memdb.replica(0).down = False
        await wait_until(lambda: admitted(db) == ["replica-0"], within=READMIT * INTERVAL)
        # Once it has returned results (ORM objects loaded from the replica), it does
        # not move to another server: DBUnavailable, the objects left as they were.
        async with db.reader() as session:
            note = await session.get(Note, 1)
            assert session.server == "replica-0"
            memdb.replica(0).down = True
            with pytest.raises(DBUnavailable, match="run it again"):
                await session.refresh(note)
            assert note is not None
            assert note.body == "x"


# -- MemoryDB stands in for MySQL ------------------------------------------------------------


async def test_a_replica_applies_writes_while_a_long_read_session_is_open(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, max_lag=1.0, sticky_seconds=0.0) as (db, _, _):
        seen: list[int] = []
        async with db.reader() as session:
            assert session.server == "replica-0"
            for id in range(1, 9):  # 4 s of writes on the primary, elsewhere
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(insert, db, id)
                seen.append(int(await session.scalar(text("SELECT COUNT(*) FROM notes"))))
                await trio.sleep(0.5)
            # The replica kept up (as a MySQL replica does), while the session kept its
            # snapshot (REPEATABLE READ).
            assert admitted(db) == ["replica-0"]
            assert set(seen) == {seen[0]}
        assert await read_ids(db) == ("replica-0", list(range(1, 9)))


async def test_a_reader_nested_in_a_transaction_fails_over_to_the_primary(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, sticky_seconds=0.0) as (db, _, _):
        await insert(db, 1)
        memdb.replica(0).catch_up()
        async with db.transaction() as outer:
            await outer.execute(text("INSERT INTO notes VALUES (2, 'uncommitted')"))
            memdb.replica(0).down = True
            # On MySQL another connection: it sees what is committed, not the
            # transaction's own uncommitted row.
            assert await read_ids(db) == ("primary", [1])
        assert await read_ids(db, consistent=True) == ("primary", [1, 2])


async def test_a_cancelled_session_always_gives_the_server_back(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, replicas=0) as (db, _, _):
        with trio.move_on_after(1.0):
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO notes VALUES (1, 'x')"))
                memdb.primary.pause()  # its rollback hangs: abandoned, the session dropped
                await trio.sleep(10.0)
        memdb.primary.resume()
        with trio.fail_after(10.0):  # the next session gets the server
            assert await read_ids(db) == ("primary", [])


async def test_a_replica_whose_reads_fail_while_its_probes_pass_does_not_flap(
    memdb: MemoryDB,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(memdb, sticky_seconds=0.0) as (db, _, _):
        memdb.replica(0).fail_next(2013, times=100_000)  # every read fails; probes pass
        with structlog.testing.capture_logs() as logs:
            with trio.move_on_after(60.0):
                while True:  # a busy reader: every read gets its answer, from somewhere
                    assert (await read_ids(db))[1] == []
                    await trio.sleep(0.1)
            ejections = [e for e in logs if e["event"] == "db.replica_ejected"]
        # Each re-admission needs more passing probes in a row (3, 6, 12, 24...): a few
        # ejections in a minute, not one per probe interval.
        assert 2 <= len(ejections) <= 5
        # Healthy again: back after READMIT_PROBES passing probes in a row at most...
        memdb.replica(0)._faults.clear()
        took = await wait_until(lambda: admitted(db) == ["replica-0"], within=120)
        assert took <= 48 * INTERVAL + 0.01
        # ... and once it has stayed a while, a single blip costs only READMIT_PROBES.
        await trio.sleep(60 * INTERVAL)
        memdb.replica(0).fail_next(2013)
        assert (await read_ids(db))[0] == "primary"
        took = await wait_until(lambda: admitted(db) == ["replica-0"], within=10)
        assert took <= READMIT_PROBES * INTERVAL + 0.01
