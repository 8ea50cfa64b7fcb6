"""One conformance suite, unchanged, on every registered backend (MariaDB with primary +
replica, SQLite) and on MemoryDB."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import pytest

from gochat_actors.db import DBManager, DBSettings, MemoryDB
from gochat_actors.db._backends import BACKENDS
from gochat_actors.metrics import Metrics
from gochat_actors.testing import DB_CHECKS, check_db_backend
from supervisors import open_supervisor
from tests.gochat_actors.db.conftest import PairDB

CHECKED = {"mysql+aiomysql", "sqlite+aiosqlite"}
"""The backends this file runs the suite on: a newly registered one fails the test below."""

Check = Callable[[DBManager], Awaitable[None]]
CHECKS = pytest.mark.parametrize("check", DB_CHECKS, ids=[c.__name__ for c in DB_CHECKS])


async def _run(db: DBManager, check: Check) -> None:
    async with open_supervisor([db.spec()]):
        await check(db)


def test_every_registered_backend_runs_the_suite() -> None:
    assert set(BACKENDS.kinds()) == CHECKED


@CHECKS
async def test_memory(memdb: MemoryDB, check: Check) -> None:
    await _run(DBManager(memdb.settings(replicas=1), backend=memdb, metrics=Metrics()), check)


@CHECKS
async def test_sqlite(check: Check) -> None:
    settings = DBSettings()
    assert settings.primary.scheme == "sqlite+aiosqlite"
    await _run(DBManager(settings, metrics=Metrics()), check)


@CHECKS
async def test_mariadb_primary_and_replica(check: Check, pair_db: PairDB) -> None:
    settings = pair_db.settings()
    assert settings.primary.scheme == "mysql+aiomysql"
    await _run(DBManager(settings, metrics=Metrics()), check)


async def test_check_db_backend_runs_every_check() -> None:
    made: list[DBManager] = []

    with contextlib.ExitStack() as memdbs:

        def make() -> DBManager:
            memdb = memdbs.enter_context(MemoryDB())
            made.append(DBManager(memdb.settings(), backend=memdb))
            return made[-1]

        await check_db_backend(make)
    assert len(made) == len(DB_CHECKS)
