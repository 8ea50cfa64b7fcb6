"""open_service on the embedded defaults runs under autojump_clock (issue 21 point 1)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
import trio.testing
from sqlalchemy import text

from gochat_actors import DBError, load_settings, open_service
from gochat_actors.db import DBSettings, MemoryDB
from gochat_actors.service._backends import embedded_db


async def test_the_default_service_sleeps_an_hour_of_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Regression: the in-memory SQLite default ran in aiosqlite's thread, and virtual
    # time jumped past the primary's start timeout while the thread worked
    # (ChildStartError: DBUnavailable: the primary did not answer within 10s).
    # CPU time, not wall-clock time: the machine's load does not count, and a component
    # that waited on a thread's progress would fail to start, not be slow.
    cpu = time.process_time()
    async with open_service(load_settings(http={"enabled": False})) as service:
        t0 = trio.current_time()
        async with service.db.transaction() as session:
            await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
            await session.execute(text("INSERT INTO t VALUES (1, 'hello')"))
        await trio.sleep(3600)
        async with service.db.reader() as session:
            body = (await session.execute(text("SELECT body FROM t WHERE id = 1"))).scalar_one()
        assert body == "hello"
        assert trio.current_time() - t0 >= 3600
        assert service.supervisor.health().ready
    assert time.process_time() - cpu < 2.0


def test_only_the_in_memory_sqlite_default_runs_in_place(tmp_path: Path) -> None:
    assert isinstance(embedded_db(DBSettings()), MemoryDB)
    for primary in (
        f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",  # a file keeps aiosqlite (and WAL)
        "sqlite+aiosqlite:///file::memory:?cache=shared",
        "mysql+aiomysql://u@127.0.0.1/app",
    ):
        assert embedded_db(DBSettings.model_validate({"primary": primary})) is None
    with_replica = {"primary": "sqlite+aiosqlite:///:memory:", "replicas": ["sqlite+aiosqlite:///:memory:"]}
    assert embedded_db(DBSettings.model_validate(with_replica)) is None
    upper = DBSettings.model_validate({"primary": "SQLITE+AIOSQLITE:///:memory:"})
    assert isinstance(embedded_db(upper), MemoryDB)  # the scheme as the settings read it


def test_the_in_place_default_keeps_no_binlog() -> None:
    memdb = MemoryDB(replication=False)
    assert memdb.primary.snapshot_session is None
    with pytest.raises(ValueError, match="replication=False"):
        memdb.replica(0)
    assert MemoryDB().primary.snapshot_session is not None


async def test_a_reader_nested_in_a_transaction_is_refused_as_on_sqlite(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = load_settings(http={"enabled": False})
    async with open_service(settings, components=["db"]) as svc, svc.db.transaction():
        with pytest.raises(DBError, match="one session at a time"):
            async with svc.db.reader():
                pass
