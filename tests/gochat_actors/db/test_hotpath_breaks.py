"""Adversarial review of the db hot path (merge 6d4534d: statements straight to
greenlet_spawn through Bridge.run_coroutine, no cancel scope without a timeout): a
cancellation at every step of a transaction, SQLite (exclusive) and MariaDB, the
bridge tuning on and off."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from sqlalchemy import text

from gochat_actors import DBCommitUnknown, DBError
from gochat_actors._loop_tuning import TUNING_ENV
from gochat_actors.db import DBManager, DBSettings
from supervisors import open_supervisor

STEPS = 40


class _CancelAfter(trio.abc.Instrument):
    """Cancels ``scope`` once ``task`` has run ``steps`` steps."""

    def __init__(self, task: trio.lowlevel.Task, scope: trio.CancelScope, steps: int) -> None:
        self.task, self.scope, self.left = task, scope, steps

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.left -= 1
            if self.left == 0:
                self.scope.cancel()


async def _rows(db: DBManager) -> list[int]:
    async with db.reader(consistent=True) as session:
        return sorted(r[0] for r in (await session.execute(text("SELECT id FROM t"))).all())


async def _every_step(db: DBManager, mode: str) -> None:
    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    outcomes: list[str] = []
    for steps in range(1, STEPS):
        key = steps
        outcome = "?"
        scope = trio.CancelScope()
        instrument = _CancelAfter(trio.lowlevel.current_task(), scope, steps)
        trio.lowlevel.add_instrument(instrument)
        try:
            with scope:
                try:
                    opened = db.transaction() if mode == "transaction" else db.writer()
                    async with opened as session:
                        await session.execute(text(f"INSERT INTO t VALUES ({key})"))
                        if mode == "writer":  # each call commits: this one did
                            outcome = "committed"
                        await session.execute(text("SELECT 1"))
                    outcome = "committed"
                except DBCommitUnknown:
                    outcome = "unknown"
                    raise
        except DBCommitUnknown:
            pass
        finally:
            trio.lowlevel.remove_instrument(instrument)
        if outcome == "?":
            assert scope.cancelled_caught
            outcome = "cancelled"
        present = key in await _rows(db)
        if outcome == "cancelled":
            assert not present, f"cancelled after {steps} steps, yet committed"
        elif outcome == "committed":
            assert present, f"returned after {steps} steps, yet not committed"
        outcomes.append(outcome)
    assert outcomes[0] == "cancelled"
    assert outcomes[-1] == "committed", outcomes  # every step of it was cut once


@pytest.mark.parametrize("mode", ["transaction", "writer"])
@pytest.mark.parametrize("tuning", ["on", "off"])
async def test_sqlite_cancel_at_every_step_never_commits_a_cancelled_transaction(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tuning: str, mode: str
) -> None:
    monkeypatch.setenv(TUNING_ENV, tuning)
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    db = DBManager(DBSettings.model_validate({"primary": url}))
    async with open_supervisor([db.spec()]):
        await _every_step(db, mode)


@pytest.mark.mariadb
@pytest.mark.parametrize("mode", ["transaction", "writer"])
@pytest.mark.parametrize("tuning", ["on", "off"])
async def test_mariadb_cancel_at_every_step_never_commits_a_cancelled_transaction(
    monkeypatch: pytest.MonkeyPatch, mariadb_url: str, tuning: str, mode: str
) -> None:
    monkeypatch.setenv(TUNING_ENV, tuning)
    db = DBManager(DBSettings.model_validate({"primary": mariadb_url}))
    async with open_supervisor([db.spec()]):
        await _every_step(db, mode)


@pytest.mark.parametrize("tuning", ["on", "off"])
async def test_sqlite_user_error_rolls_back_and_the_session_goes_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tuning: str
) -> None:
    monkeypatch.setenv(TUNING_ENV, tuning)
    url = f"sqlite+aiosqlite:///{tmp_path / 'e.db'}"
    db = DBManager(DBSettings.model_validate({"primary": url}))

    class Mine(Exception):
        pass

    def boom(_: object) -> None:
        raise Mine

    async with open_supervisor([db.spec()]):
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        with pytest.raises(Mine):  # noqa: PT012  # the whole transaction
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))
                await session.run_sync(boom)
        with pytest.raises(DBError):  # noqa: PT012
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (2)"))
                await session.execute(text("INSERT INTO nowhere VALUES (2)"))
        assert await _rows(db) == []
