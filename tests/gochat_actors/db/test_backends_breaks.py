"""Adversarial review of the db registry (issue 23 point 3): error classification per
dialect unchanged, settings messages for bad schemes, replicas of a dialect without
them, and URLs the settings accept but the engine cannot open."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy.exc as sa_exc
import structlog
from pydantic import ValidationError
from sqlalchemy import text
from typer.testing import CliRunner

from gochat_actors import (
    DBError,
    DBIntegrityError,
    DBProgrammingError,
    DBTimeout,
    DBUnavailable,
    Dsn,
)
from gochat_actors._backends import Backends
from gochat_actors.db import DBManager, DBSettings
from gochat_actors.db import _backends as db_backends
from gochat_actors.db._backends import BACKENDS
from gochat_actors.db._dialect import Dialect
from gochat_actors.db._errors import driver_code, is_retryable, translate
from gochat_actors.metrics import Metrics
from supervisors import open_supervisor

SECRET = "hunter2s3cret"


class PyMySQLError(Exception):
    """Shaped like pymysql's errors: ``args == (errno, message)``."""


class PgError(Exception):
    """Shaped like psycopg's errors: a ``sqlstate`` and a message."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _sqlite_error(sql: str, *, busy: bool = False, tmp: Path | None = None) -> sqlite3.Error:
    """A real sqlite3 error (it carries ``sqlite_errorcode``)."""
    if busy:
        assert tmp is not None
        path = str(tmp / "busy.db")
        with (
            contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as a,
            contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as b,
        ):
            a.execute("CREATE TABLE t (x)")
            a.execute("BEGIN EXCLUSIVE")
            try:
                b.execute("INSERT INTO t VALUES (1)")
            except sqlite3.Error as exc:
                return exc
            raise AssertionError("not locked")
    with contextlib.closing(sqlite3.connect(":memory:")) as connection:
        try:
            connection.execute(sql)
        except sqlite3.Error as exc:
            return exc
    raise AssertionError(f"no error from {sql!r}")


def _op(
    orig: BaseException, cls: type[sa_exc.DBAPIError] = sa_exc.OperationalError
) -> BaseException:
    return cls("SELECT 1", None, orig)


@pytest.mark.parametrize(
    ("orig", "cls", "expected", "retryable"),
    [
        # MySQL/MariaDB: a replica's error codes are a primary's (no role in the mapping)
        (PyMySQLError(1213, "Deadlock found"), sa_exc.OperationalError, DBError, True),
        (PyMySQLError(1205, "Lock wait timeout"), sa_exc.OperationalError, DBTimeout, True),
        (PyMySQLError(2013, "Lost connection"), sa_exc.OperationalError, DBUnavailable, False),
        (PyMySQLError(1045, "Access denied"), sa_exc.OperationalError, DBUnavailable, False),
        (PyMySQLError(1290, "--read-only"), sa_exc.OperationalError, DBError, False),
        (PyMySQLError(1062, "Duplicate entry"), sa_exc.IntegrityError, DBIntegrityError, False),
        (
            PyMySQLError(1064, "You have an error"),
            sa_exc.ProgrammingError,
            DBProgrammingError,
            False,
        ),
        (PyMySQLError(3024, "max_statement_time"), sa_exc.OperationalError, DBTimeout, False),
        # a MySQL code is no SQLite code and the other way round
        (PyMySQLError(5, "five"), sa_exc.OperationalError, DBError, False),
        # another driver's SQLSTATE: 40001 retryable everywhere, the rest unknown
        (PgError("could not serialize", "40001"), sa_exc.OperationalError, DBError, True),
        (PgError("deadlock detected", "40P01"), sa_exc.OperationalError, DBError, False),
        (PgError("syntax error at or near", "42601"), sa_exc.OperationalError, DBError, False),
        # no code at all
        (Exception("syntax error"), sa_exc.OperationalError, DBError, False),
        (Exception("gone"), sa_exc.InterfaceError, DBUnavailable, False),
    ],
)
def test_each_dialect_maps_its_codes_as_before(
    orig: BaseException, cls: type[sa_exc.DBAPIError], expected: type[DBError], retryable: bool
) -> None:
    exc = _op(orig, cls)
    assert type(translate(exc)) is expected
    assert is_retryable(exc) is retryable


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELEC 1", DBProgrammingError),
        ("SELECT * FROM nowhere", DBProgrammingError),
        ("SELECT nofunc()", DBProgrammingError),
        ("SELECT 1 +", DBProgrammingError),
    ],
)
def test_sqlite_bad_sql_is_a_programming_error(sql: str, expected: type[DBError]) -> None:
    error = _sqlite_error(sql)
    assert isinstance(error.sqlite_errorcode, int)
    assert type(translate(_op(error))) is expected


def test_sqlite_busy_is_retryable_however_deep_it_is_wrapped(tmp_path: Path) -> None:
    busy = _sqlite_error("", busy=True, tmp=tmp_path)
    assert driver_code(busy) == 5
    exc: BaseException = _op(busy)
    assert is_retryable(exc)
    # our DBError wrapping it (twice): still SQLite's 5 (before the registry, the second
    # wrapper made it a MySQL code 5, not retryable)
    for _ in range(2):
        wrapper = DBError("wrapped")
        wrapper.__cause__ = exc
        exc = wrapper
        assert is_retryable(exc)


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://app:{SECRET}@db/chat",
        f"mysql+pymysql://app:{SECRET}@db/chat",
        f"sqlite://app:{SECRET}@/x.db",
        f"postgresql+asyncpg://app:{SECRET}@db/chat",
        f"MYSQL://app:{SECRET}@db/chat",
        "",
    ],
)
def test_a_bad_scheme_is_one_line_without_the_password(url: str) -> None:
    for fields in ({"primary": url}, {"primary": "mysql+aiomysql://u@h/db", "replicas": [url]}):
        with pytest.raises(ValidationError) as caught:
            DBSettings.model_validate(fields)
        (error,) = caught.value.errors()
        assert "mysql+aiomysql://, sqlite+aiosqlite://" in error["msg"]
        assert SECRET not in str(caught.value)
        assert "\n" not in error["msg"]


def test_check_config_names_the_bad_db_scheme_without_the_password(tmp_path: Path) -> None:
    from gochat_actors.cli import app

    path = tmp_path / "chat.toml"
    path.write_text(
        f'[db]\nprimary = "mysql+pymysql://app:{SECRET}@db/chat"\n'
        f'replicas = ["sqlite://app:{SECRET}@/r.db"]\n'
    )
    result = CliRunner().invoke(app, ["check-config", str(path)])
    assert result.exit_code != 0
    assert SECRET not in result.output
    lines = result.output.splitlines()
    assert any("primary" in x and "'mysql+pymysql'" in x for x in lines)
    assert any("replicas" in x and "'sqlite'" in x for x in lines)


def test_a_mysql_primary_ignores_its_sqlite_replicas_with_one_warning() -> None:
    settings = DBSettings.model_validate(
        {
            "primary": "mysql+aiomysql://u@db1/app",
            "replicas": ["sqlite+aiosqlite:///r1.db", "mysql+aiomysql://u@db2/app"],
        }
    )
    with structlog.testing.capture_logs() as logs:
        db = DBManager(settings)
    events = [e for e in logs if e["event"] == "db.replicas_ignored"]
    assert [(e["count"], e["reason"]) for e in events] == [(1, "SQLite replicas")]
    assert [r.name for r in db.statistics().replicas] == ["replica-0"]


@pytest.mark.parametrize("url", ["SQLITE+AIOSQLITE:///:memory:", "  Sqlite+Aiosqlite:///:memory:"])
async def test_a_scheme_the_settings_accept_opens(url: str) -> None:
    settings = DBSettings(primary=Dsn(url))
    assert settings.primary.scheme == "sqlite+aiosqlite"  # accepted, as its dialect
    db = DBManager(settings, metrics=Metrics())
    async with open_supervisor([db.spec()]), db.transaction() as session:
        assert await session.scalar(text("SELECT 1")) == 1


def test_the_mysql_engine_gets_the_scheme_as_the_settings_read_it() -> None:
    import sqlalchemy as sa

    from gochat_actors.db._mysql import MYSQL

    dsn = Dsn(f"MySQL+AioMySQL://app:{SECRET}@db:3306/chat")
    target, _ = MYSQL.engine_args(dsn, pool_size=1)
    url = sa.make_url(target)
    assert url.drivername == "mysql+aiomysql"
    assert url.password == SECRET


def test_tls_parameters_on_a_sqlite_url_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        DBSettings(primary=Dsn(f"sqlite+aiosqlite:///chat.db?ssl_ca=/ca.pem&password={SECRET}"))
    (error,) = caught.value.errors()
    assert error["msg"] == "ssl_ca: TLS is for mysql+aiomysql:// URLs, not sqlite+aiosqlite://"
    assert SECRET not in str(caught.value)
    DBSettings(primary=Dsn("sqlite+aiosqlite:///chat.db?mode=ro"))  # other parameters: as before


class _PgDialect(Dialect):
    """A dialect whose driver reports SQLSTATE strings (asyncpg, psycopg), as
    docs/design.md's "a database dialect (say postgresql+asyncpg://) is one module"."""

    name = "PostgreSQL"

    def claims(self, error: BaseException) -> bool:
        return isinstance(error, PgError)

    def unavailable(self, code: int | str) -> bool:
        return code in {"08006", "57P01"}

    def timed_out(self, code: int | str) -> bool:
        return code == "57014"

    def retryable(self, code: int | str) -> bool:
        return code == "40P01"


def test_a_sqlstate_dialect_maps_its_own_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    registry: Backends[Dialect] = Backends("db")
    for kind in BACKENDS.kinds():
        registry.add(BACKENDS.factory(kind), *BACKENDS.kinds()[kind])
    registry.add(_PgDialect(), "postgresql+asyncpg")
    monkeypatch.setattr(db_backends, "BACKENDS", registry)

    assert type(translate(_op(PgError("terminating", "57P01")))) is DBUnavailable
    assert type(translate(_op(PgError("canceling statement", "57014")))) is DBTimeout
    assert is_retryable(_op(PgError("deadlock detected", "40P01")))
    assert is_retryable(_op(PgError("could not serialize", "40001")))  # every dialect's
