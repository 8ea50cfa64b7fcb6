"""The conformance suite of :class:`~gochat_actors.db.DBManager` backends.

Each check takes a *running* ``DBManager`` (its ``spec()`` started in a supervisor) and
raises ``AssertionError`` when the behaviour is wrong. The checks use only SQL that
MariaDB and SQLite both accept, each on tables of its own (created and dropped), so
they can share a database. They run unchanged on MariaDB (primary + replica), on SQLite
(aiosqlite, the embedded default) and on :class:`~gochat_actors.db.MemoryDB`.

Example::

    from gochat_actors.testing import DB_CHECKS, check_db_backend

    async def test_my_backend():
        await check_db_backend(lambda: DBManager(settings, backend=MyBackend()))
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import trio

from supervisors import open_supervisor

from .._exceptions import DBError, DBIntegrityError, DBProgrammingError, DBTimeout

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..db import DBManager, DBSession

__all__ = ["DB_CHECKS", "check_db_backend"]

Check = Callable[["DBManager"], Awaitable[None]]
E = TypeVar("E", bound=BaseException)


class _Boom(Exception):
    """Raised by a check's own code, to see it come back unchanged."""


class _Expect(Generic[E]):
    """``with _Expect(DBTimeout) as caught:`` like ``pytest.raises``, without pytest."""

    def __init__(self, kind: type[E]) -> None:
        self.kind = kind
        self._value: E | None = None

    @property
    def value(self) -> E:
        assert self._value is not None
        return self._value

    def __enter__(self) -> _Expect[E]:
        return self

    def __exit__(self, etype: object, exc: BaseException | None, tb: object) -> bool:
        if exc is None:
            raise AssertionError(f"no {self.kind.__name__} was raised")
        if isinstance(exc, self.kind):
            self._value = exc
            return True
        return False


def _sql(statement: str) -> Any:
    from sqlalchemy import text

    return text(statement)


@asynccontextmanager
async def _table(db: DBManager) -> AsyncIterator[str]:
    """A fresh table ``(id INTEGER PRIMARY KEY, body VARCHAR(100) NOT NULL UNIQUE)``."""
    name = f"gochat_conf_{uuid.uuid4().hex[:12]}"
    async with db.transaction() as session:
        await session.execute(
            _sql(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, body VARCHAR(100) NOT NULL UNIQUE)")
        )
    try:
        yield name
    finally:
        with trio.CancelScope(shield=True):
            async with db.transaction() as session:
                await session.execute(_sql(f"DROP TABLE {name}"))


async def _insert(session: DBSession, table: str, id: int, body: str) -> None:
    await session.execute(
        _sql(f"INSERT INTO {table} (id, body) VALUES (:id, :body)"), {"id": id, "body": body}
    )


async def _ids(db: DBManager, table: str) -> list[int]:
    async with db.reader(consistent=True) as session:
        result = await session.execute(_sql(f"SELECT id FROM {table} ORDER BY id"))
        return [int(i) for i in result.scalars()]


# -- the checks -------------------------------------------------------------------------


async def check_commit_is_visible(db: DBManager) -> None:
    """A committed transaction is seen by later sessions; it ran on the primary."""
    async with _table(db) as table:
        async with db.transaction() as session:
            await _insert(session, table, 1, "a")
            await _insert(session, table, 2, "b")
            assert session.server == "primary", session.server
            assert session.wrote
        assert await _ids(db, table) == [1, 2]
        async with db.writer() as session:
            count = await session.scalar(_sql(f"SELECT COUNT(*) FROM {table}"))
        assert count == 2, count


async def check_rollback_on_exception(db: DBManager) -> None:
    """An exception in the block rolls back and comes out unchanged."""
    async with _table(db) as table:
        boom = _Boom("mine")
        with _Expect(_Boom) as caught:
            async with db.transaction() as session:
                await _insert(session, table, 1, "a")
                raise boom
        assert caught.value is boom
        assert await _ids(db, table) == []


async def check_rollback_on_cancellation(db: DBManager) -> None:
    """A transaction cancelled half-way leaves nothing committed."""
    async with _table(db) as table:
        with trio.CancelScope() as scope:
            async with db.transaction() as session:
                await _insert(session, table, 1, "a")
                scope.cancel()
                await trio.lowlevel.checkpoint()  # the cancellation lands here
                await _insert(session, table, 2, "b")
        assert scope.cancelled_caught
        assert await _ids(db, table) == []


async def check_cancellation_pending_at_block_end_rolls_back(db: DBManager) -> None:
    """A cancellation already pending when the block ends rolls back: the COMMIT is
    never sent (not even where statements are shielded, as on SQLite)."""
    async with _table(db) as table:
        with trio.CancelScope() as scope:
            async with db.transaction() as session:
                await _insert(session, table, 1, "a")
                scope.cancel()  # no checkpoint after it: pending when the block ends
        assert scope.cancelled_caught
        assert await _ids(db, table) == []


async def check_a_call_with_a_cancellation_pending_does_nothing(db: DBManager) -> None:
    """A call made while a cancellation is pending is not sent (a writer's would commit)."""
    async with _table(db) as table:
        with trio.CancelScope() as scope:
            async with db.writer() as session:
                scope.cancel()
                await _insert(session, table, 1, "a")
        assert scope.cancelled_caught
        assert await _ids(db, table) == []


async def check_timeout_rolls_back(db: DBManager) -> None:
    """``transaction(timeout=...)`` past its time: rolled back, DBTimeout."""
    async with _table(db) as table:
        with _Expect(DBTimeout) as caught:
            async with db.transaction(timeout=0.05) as session:
                await _insert(session, table, 1, "a")
                await trio.sleep(10)
        assert isinstance(caught.value, TimeoutError)
        assert await _ids(db, table) == []


async def check_duplicate_key_is_integrity_error(db: DBManager) -> None:
    """A duplicate key is DBIntegrityError; the value never shows in the error or its cause."""
    async with _table(db) as table:
        secret = f"secret-{uuid.uuid4().hex}"
        async with db.transaction() as session:
            await _insert(session, table, 1, secret)
        with _Expect(DBIntegrityError) as caught:
            async with db.transaction() as session:
                await _insert(session, table, 2, secret)
        cause = caught.value.__cause__
        assert cause is not None
        assert secret not in str(caught.value), str(caught.value)
        assert secret not in str(cause), str(cause)
        assert secret not in repr(getattr(cause, "params", None))
        assert await _ids(db, table) == [1]


async def check_bad_sql_is_programming_error(db: DBManager) -> None:
    """Bad SQL is DBProgrammingError with the statement text, never the parameters."""
    async with _table(db) as table:
        secret = f"secret-{uuid.uuid4().hex}"
        sql = f"INSERT INTO {table} (id, body) VALUES (:id, :body) gochat_nonsense"
        with _Expect(DBProgrammingError) as caught:
            async with db.transaction() as session:
                await session.execute(_sql(sql), {"id": 1, "body": secret})
        statement = caught.value.statement
        assert statement is not None
        assert "gochat_nonsense" in statement
        for text in (str(caught.value), statement, str(caught.value.__cause__)):
            assert secret not in text, text


async def check_unknown_table_is_programming_error(db: DBManager) -> None:
    """A missing table is DBProgrammingError naming the statement."""
    missing = f"gochat_missing_{uuid.uuid4().hex[:8]}"
    with _Expect(DBProgrammingError) as caught:
        async with db.reader(consistent=True) as session:
            await session.execute(_sql(f"SELECT * FROM {missing}"))
    assert caught.value.statement is not None
    assert missing in caught.value.statement


async def check_with_transaction_async_fn(db: DBManager) -> None:
    """with_transaction(async fn) commits and returns fn's result."""
    async with _table(db) as table:

        async def add(session: DBSession, id: int) -> int:
            await _insert(session, table, id, f"row {id}")
            return id * 10

        assert await db.with_transaction(add, 3) == 30
        assert await _ids(db, table) == [3]


async def check_with_transaction_sync_fn(db: DBManager) -> None:
    """with_transaction(sync fn) runs the whole unit at once; its errors come out unchanged."""
    async with _table(db) as table:

        def add(session: Session, id: int) -> int:
            insert = _sql(f"INSERT INTO {table} (id, body) VALUES (:id, :body)")
            session.execute(insert, {"id": id, "body": f"row {id}"})
            return id * 10

        def add_then_fail(session: Session, id: int) -> int:
            add(session, id)
            raise _Boom("after the insert")

        assert await db.with_transaction(add, 4) == 40
        with _Expect(_Boom):
            await db.with_transaction(add_then_fail, 5)
        assert await _ids(db, table) == [4]


async def check_with_transaction_does_not_retry_other_errors(db: DBManager) -> None:
    """Only deadlocks and lock waits are retried: a duplicate key runs fn once."""
    async with _table(db) as table:
        calls = 0

        async def duplicate(session: DBSession) -> None:
            nonlocal calls
            calls += 1
            await _insert(session, table, 1, "same")
            await _insert(session, table, 2, "same")

        with _Expect(DBIntegrityError):
            await db.with_transaction(duplicate, retries=3)
        assert calls == 1, calls
        assert await _ids(db, table) == []


async def check_writer_commits_each_statement(db: DBManager) -> None:
    """A writer commits every statement at once: a later error keeps the earlier rows."""
    async with _table(db) as table:
        with _Expect(_Boom):
            async with db.writer() as session:
                await _insert(session, table, 1, "a")
                raise _Boom("after one statement")
        assert await _ids(db, table) == [1]


async def check_reader_never_commits(db: DBManager) -> None:
    """A reader session ends with a rollback, whatever it ran."""
    async with _table(db) as table:
        async with db.reader(consistent=True) as session:
            assert session.server == "primary"
            await _insert(session, table, 1, "a")
        assert await _ids(db, table) == []


async def check_read_your_writes(db: DBManager) -> None:
    """After a committed write, a reader in the same context sees it (the primary serves
    it for ``sticky_seconds``, or a replica that has it)."""
    if db.settings.sticky_seconds == 0 and db.settings.replicas:
        return  # no promise without stickiness
    async with _table(db) as table:
        async with db.transaction() as session:
            await _insert(session, table, 7, "mine")
        async with db.reader() as session:
            found = await session.scalar(_sql(f"SELECT body FROM {table} WHERE id = 7"))
        assert found == "mine", (found, session.server)


async def check_results_are_buffered(db: DBManager) -> None:
    """Results can be read after their session ended (no I/O on the trio side)."""
    async with _table(db) as table:
        async with db.transaction() as session:
            await _insert(session, table, 1, "a")
            await _insert(session, table, 2, "b")
        async with db.reader(consistent=True) as session:
            result = await session.execute(_sql(f"SELECT id, body FROM {table} ORDER BY id"))
        assert [tuple(row) for row in result] == [(1, "a"), (2, "b")]


async def check_orm_objects(db: DBManager) -> None:
    """ORM add/flush/get/delete work; objects stay loaded after commit."""
    metadata, note_class = _orm_model(f"gochat_conf_orm_{uuid.uuid4().hex[:12]}")
    async with db.transaction() as session:
        await session.run_sync(lambda s: metadata.create_all(s.connection()))
    try:
        async with db.transaction() as session:
            note = note_class(id=1, body="hello")
            session.add(note)
            await session.flush()
        assert note.body == "hello"  # still loaded: expire_on_commit=False
        async with db.transaction() as session:
            found = await session.get(note_class, 1)
            assert found is not None
            assert found.body == "hello"
            await session.delete(found)
        async with db.reader(consistent=True) as session:
            assert await session.get(note_class, 1) is None
    finally:
        with trio.CancelScope(shield=True):
            async with db.transaction() as session:
                await session.run_sync(lambda s: metadata.drop_all(s.connection()))


def _orm_model(table: str) -> tuple[Any, Any]:
    from sqlalchemy import Integer, String
    from sqlalchemy.orm import DeclarativeBase, mapped_column

    class Base(DeclarativeBase):
        pass

    class Note(Base):
        __tablename__ = table
        id = mapped_column(Integer, primary_key=True, autoincrement=False)
        body = mapped_column(String(100), nullable=False)

    return Base.metadata, Note


async def check_errors_are_db_errors(db: DBManager) -> None:
    """Every failure of a statement is a DBError (never a driver's exception)."""
    with _Expect(DBError) as caught:
        async with db.transaction() as session:
            await session.execute(_sql("SELECT * FROM"))
    assert type(caught.value).__module__ == "gochat_actors", type(caught.value)


async def check_bulk_insert(db: DBManager) -> None:
    """A list of parameter dicts is one ``executemany``: through ``db.transaction()``
    (a text INSERT and a Core ``insert()``) and ``with_transaction``, every row lands in
    one commit; a failing row rolls the whole batch back."""
    from sqlalchemy import column, insert
    from sqlalchemy import table as table_of

    async with _table(db) as table:
        rows = [{"id": n, "body": f"m{n}"} for n in range(1, 201)]
        statement = _sql(f"INSERT INTO {table} (id, body) VALUES (:id, :body)")
        async with db.transaction() as session:
            await session.execute(statement, rows[:100])
        core = insert(table_of(table, column("id"), column("body")))
        async with db.transaction() as session:
            await session.execute(core, rows[100:150])

        def persist(s: Session, batch: list[dict[str, Any]]) -> None:
            s.execute(statement, batch)

        await db.with_transaction(persist, rows[150:])
        assert await _ids(db, table) == list(range(1, 201))
        with _Expect(DBIntegrityError):
            async with db.transaction() as session:
                await session.execute(statement, [{"id": 201, "body": "new"}, rows[0]])
        assert await _ids(db, table) == list(range(1, 201)), "the failed batch left no row"


DB_CHECKS: list[Check] = [
    check_commit_is_visible,
    check_rollback_on_exception,
    check_rollback_on_cancellation,
    check_cancellation_pending_at_block_end_rolls_back,
    check_a_call_with_a_cancellation_pending_does_nothing,
    check_timeout_rolls_back,
    check_duplicate_key_is_integrity_error,
    check_bad_sql_is_programming_error,
    check_unknown_table_is_programming_error,
    check_with_transaction_async_fn,
    check_with_transaction_sync_fn,
    check_with_transaction_does_not_retry_other_errors,
    check_writer_commits_each_statement,
    check_reader_never_commits,
    check_read_your_writes,
    check_results_are_buffered,
    check_orm_objects,
    check_errors_are_db_errors,
    check_bulk_insert,
]
"""Every check of the suite, for ``pytest.mark.parametrize``."""


async def check_db_backend(make_db: Callable[[], DBManager]) -> None:
    """Run every check of :data:`DB_CHECKS`, each on a fresh ``make_db()`` started in its
    own supervisor.

    Example::

        await check_db_backend(lambda: DBManager(DBSettings()))   # SQLite in memory
    """
    for check in DB_CHECKS:
        db = make_db()
        async with open_supervisor([db.spec()]):
            await check(db)
