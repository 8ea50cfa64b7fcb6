"""Driver errors translated at the edge; labels for metrics; the replica verdict."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import sqlalchemy.exc as sa_exc
from sqlalchemy import column, delete, insert, select, table, text, update

from gochat_actors import (
    BridgeNotRunning,
    DBError,
    DBIntegrityError,
    DBProgrammingError,
    DBTimeout,
    DBUnavailable,
)
from gochat_actors.db import ReplicaStatus
from gochat_actors.db._classify import classify, classify_text
from gochat_actors.db._errors import driver_code, is_retryable, translate
from gochat_actors.db._manager import assess_replica


class PyMySQLError(Exception):
    """Shaped like pymysql's errors: ``args == (errno, message)``."""


def mysql_error(
    kind: type[sa_exc.DBAPIError], code: int, message: str, params: Any = None
) -> sa_exc.DBAPIError:
    return kind("INSERT INTO t VALUES (%s, %s)", params, PyMySQLError(code, message))


def translated(exc: BaseException) -> DBError:
    error = translate(exc)
    error.__cause__ = exc
    return error


@pytest.mark.parametrize(
    ("kind", "code", "expected"),
    [
        (sa_exc.OperationalError, 2003, DBUnavailable),
        (sa_exc.OperationalError, 2013, DBUnavailable),
        (sa_exc.OperationalError, 1205, DBTimeout),
        (sa_exc.OperationalError, 1969, DBTimeout),
        (sa_exc.IntegrityError, 1062, DBIntegrityError),
        (sa_exc.IntegrityError, 1452, DBIntegrityError),
        (sa_exc.ProgrammingError, 1064, DBProgrammingError),
        (sa_exc.ProgrammingError, 1146, DBProgrammingError),
        (sa_exc.OperationalError, 1213, DBError),
        (sa_exc.DataError, 1406, DBError),
    ],
)
def test_mysql_codes(kind: type[sa_exc.DBAPIError], code: int, expected: type[DBError]) -> None:
    error = translated(mysql_error(kind, code, "message"))
    assert type(error) is expected
    assert f"({code})" in str(error)
    assert driver_code(error) == code


@pytest.mark.parametrize(
    ("code", "retryable"), [(1213, True), (1205, True), (1062, False), (2013, False), (1064, False)]
)
def test_only_deadlocks_and_lock_waits_are_retryable(code: int, retryable: bool) -> None:
    assert is_retryable(translated(mysql_error(sa_exc.OperationalError, code, "m"))) is retryable


def test_serialization_failure_sqlstate_is_retryable() -> None:
    class PgError(Exception):
        sqlstate = "40001"

    error = translated(sa_exc.OperationalError("UPDATE t", None, PgError("could not serialize")))
    assert is_retryable(error)


def test_a_connection_invalidated_is_unavailable() -> None:
    exc = sa_exc.OperationalError(
        "SELECT 1", None, PyMySQLError(9999, "odd"), connection_invalidated=True
    )
    assert isinstance(translate(exc), DBUnavailable)


def test_duplicate_value_is_masked_in_our_message_and_in_the_cause() -> None:
    exc = mysql_error(
        sa_exc.IntegrityError,
        1062,
        "Duplicate entry 'alice@example.com' for key 'users.email'",
        ("alice@example.com", 42),
    )
    error = translate(exc)
    assert str(error) == "integrity error (1062): Duplicate entry '***' for key 'users.email'"
    assert "alice" not in str(exc)
    assert exc.params is None


def test_syntax_error_near_a_value_is_masked_but_near_sql_is_kept() -> None:
    leaky = mysql_error(
        sa_exc.ProgrammingError,
        1064,
        "You have an error in your SQL syntax; ... near 'hunter2') garbage' at line 1",
        {"password": "hunter2"},
    )
    error = translate(leaky)
    assert isinstance(error, DBProgrammingError)
    assert "hunter2" not in str(error)
    assert "near '***' at line 1" in str(error)
    assert error.statement == "INSERT INTO t VALUES (%s, %s)"
    # The SQL near the error is kept when it is the statement's own text (no value in it).
    own_sql = sa_exc.ProgrammingError(
        "SELECT %s garbage", {"a": "x1"}, PyMySQLError(1064, "... near 'garbage' at line 1")
    )
    assert "near 'garbage' at line 1" in str(translate(own_sql))
    # Text that is not the statement's (a value cut short, say) is masked, whatever it is.
    cut = mysql_error(sa_exc.ProgrammingError, 1064, "... near 'hunter' at line 1", {"p": "x"})
    assert "near '***' at line 1" in str(translate(cut))


def test_sqlite_syntax_error_is_a_programming_error() -> None:
    import sqlite3

    # Closed here: the exception's traceback keeps the connection alive past the test,
    # and Python 3.13 reports one left to the garbage collector (unclosed database).
    with contextlib.closing(sqlite3.connect(":memory:")) as connection:
        try:
            connection.execute("SELEC 1")
        except sqlite3.OperationalError as exc:
            error = translate(sa_exc.OperationalError("SELEC 1", None, exc))
    assert isinstance(error, DBProgrammingError)
    assert error.statement == "SELEC 1"


def test_non_driver_errors() -> None:
    assert isinstance(translate(sa_exc.TimeoutError("QueuePool limit")), DBTimeout)
    assert isinstance(translate(BridgeNotRunning("down")), DBUnavailable)
    assert isinstance(translate(ConnectionRefusedError("refused")), DBUnavailable)
    assert isinstance(translate(TimeoutError("slow")), DBTimeout)
    missing = sa_exc.StatementError(
        "A value is required for bind parameter 'x'", "SELECT :x", {}, None
    )
    error = translate(missing)
    assert isinstance(error, DBProgrammingError)
    assert error.statement == "SELECT :x"
    assert "bind parameter 'x'" in str(error)  # a name, not a value: kept
    already = DBUnavailable("x")
    assert translate(already) is already


def test_urls_in_messages_are_masked() -> None:
    exc = mysql_error(sa_exc.OperationalError, 2003, "cannot reach mysql://app:s3cret@db:3306/x")
    assert "s3cret" not in str(translate(exc))


# -- labels -------------------------------------------------------------------------------

users = table("users", column("id"), column("name"))


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (select(users.c.id), ("select", "users")),
        (insert(users).values(id=1), ("insert", "users")),
        (update(users).values(name="x"), ("update", "users")),
        (delete(users), ("delete", "users")),
        (text("SELECT 1"), ("select", "_none")),
        (text("select * from messages m join rooms r on r.id = m.room"), ("select", "messages")),
        ("INSERT INTO `app`.`messages` (id) VALUES (%s)", ("insert", "app.messages")),
        ("UPDATE rooms SET n = n + 1", ("update", "rooms")),
        ("CREATE TABLE IF NOT EXISTS rooms (id INT)", ("ddl", "rooms")),
        ("SHOW SLAVE STATUS", ("select", "_none")),
        ("VACUUM", ("other", "_none")),
        ('SELECT * FROM "weird name"', ("select", "_other")),
    ],
)
def test_classify(statement: object, expected: tuple[str, str]) -> None:
    assert classify(statement) == expected


def test_classify_text_is_cached() -> None:
    classify_text.cache_clear()
    for _ in range(3):
        classify_text("SELECT 1 FROM a")
    assert classify_text.cache_info().hits == 2


# -- the replica verdict ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "healthy", "why"),
    [
        (ReplicaStatus(True, True, True, 0.0), True, "lag 0s"),
        (ReplicaStatus(True, True, True, 5.0), True, "lag 5s"),
        (ReplicaStatus(True, True, True, 5.5), False, "lagging 5.5s"),
        (ReplicaStatus(True, True, False, None), False, "SQL thread not running"),
        (ReplicaStatus(True, False, True, 0.0), False, "IO thread not running"),
        (ReplicaStatus(True, True, True, None), False, "lag unknown"),
        (ReplicaStatus(False, False, False, None), False, "not a replica"),
        (ReplicaStatus(True, True, True, 0.0, known=False), True, "privilege"),
    ],
)
def test_assess_replica(status: ReplicaStatus, healthy: bool, why: str) -> None:
    verdict, reason = assess_replica(status, max_lag=5.0)
    assert verdict is healthy
    assert why in reason
