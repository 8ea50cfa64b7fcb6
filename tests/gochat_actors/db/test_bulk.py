"""Bulk persistence (issue 24 point 4): a batch of rows in one transaction and one round
trip. The conformance suite's ``check_bulk_insert`` shows it works on every backend; here
MariaDB's own statement counter shows that a list of parameter dicts is sent as ONE
statement (aiomysql rewrites a text INSERT's executemany into one multi-row INSERT;
SQLAlchemy sends a Core ``insert()`` with "insertmanyvalues")."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import column, insert, table, text
from sqlalchemy.orm import Session

from gochat_actors.db import DBManager, DBSession, DBSettings
from supervisors import open_supervisor

ROWS = [{"id": n, "body": "x" * 1000} for n in range(500)]  # 500 rows of 1 KB
TEXT_INSERT = text("INSERT INTO bulk (id, body) VALUES (:id, :body)")
CORE_INSERT = insert(table("bulk", column("id"), column("body")))
QUESTIONS = text(
    "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'QUESTIONS'"
)


async def _questions(session: DBSession) -> int:
    """Statements this connection sent so far (this one included)."""
    return int(await session.scalar(QUESTIONS))


@pytest.mark.parametrize("statement", [TEXT_INSERT, CORE_INSERT], ids=["text", "core"])
async def test_a_batch_is_one_statement_in_one_transaction(
    mariadb_url: str, statement: Any
) -> None:
    db = DBManager(DBSettings.model_validate({"primary": mariadb_url}))
    async with open_supervisor([db.spec()]):
        async with db.transaction() as session:
            await session.execute(
                text("CREATE TABLE bulk (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            )
        async with db.transaction() as session:
            before = await _questions(session)
            await session.execute(statement, ROWS)
            sent = await _questions(session) - before
        assert sent == 2, f"{sent - 1} statements for 500 rows (and the counter's own query)"
        async with db.reader(consistent=True) as session:
            assert await session.scalar(text("SELECT COUNT(*) FROM bulk")) == 500


async def test_with_transaction_persists_a_batch_in_one_crossing(mariadb_url: str) -> None:
    db = DBManager(DBSettings.model_validate({"primary": mariadb_url}))

    def persist(s: Session, rows: list[dict[str, Any]]) -> int:
        before = int(s.scalar(QUESTIONS))
        s.execute(TEXT_INSERT, rows)
        return int(s.scalar(QUESTIONS)) - before

    async with open_supervisor([db.spec()]):
        async with db.transaction() as session:
            await session.execute(
                text("CREATE TABLE bulk (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            )
        assert await db.with_transaction(persist, ROWS) == 2
        async with db.reader(consistent=True) as session:
            assert await session.scalar(text("SELECT COUNT(*) FROM bulk")) == 500
