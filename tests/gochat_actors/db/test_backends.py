"""The db registry: one Dialect per URL scheme drives the settings, the servers and the
error translation."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
from pydantic import ValidationError

from gochat_actors import Bridge, Dsn
from gochat_actors.db import DBSettings
from gochat_actors.db._backends import BACKENDS, GENERIC, dialect, dialect_of_error
from gochat_actors.db._dialect import Dialect
from gochat_actors.db._mysql import MYSQL
from gochat_actors.db._sqlalchemy import SQLAlchemyServer
from gochat_actors.db._sqlite import SQLITE


def test_an_unknown_scheme_is_one_line_naming_it_and_every_registered_one() -> None:
    with pytest.raises(ValidationError) as caught:
        DBSettings(primary=Dsn("postgresql+asyncpg://app@db/chat"))
    (error,) = caught.value.errors()
    expected = ", ".join(f"{scheme}://" for scheme in BACKENDS.schemes)
    assert error["msg"] == (f"unsupported scheme 'postgresql+asyncpg' (expected {expected})")


@pytest.mark.parametrize(
    ("url", "expected"),
    [("mysql+aiomysql://u@db/chat", MYSQL), ("sqlite+aiosqlite:///chat.db", SQLITE)],
)
def test_a_server_runs_with_the_dialect_of_its_scheme(url: str, expected: Dialect) -> None:
    dsn = Dsn(url)
    assert dialect(dsn) is expected
    server = SQLAlchemyServer(
        dsn, name="primary", role="primary", bridge=Bridge(), pool_size=1, metrics=None
    )
    assert server.dialect is expected
    assert (server.exclusive is not None) is expected.exclusive


class PyMySQLError(Exception):
    """Shaped like pymysql's errors: ``args == (errno, message)``."""


def test_an_error_belongs_to_the_dialect_whose_driver_raised_it() -> None:
    with (
        contextlib.closing(sqlite3.connect(":memory:")) as connection,
        pytest.raises(sqlite3.OperationalError) as caught,
    ):
        connection.execute("SELEC 1")
    assert dialect_of_error(caught.value) == (SQLITE, 1)
    assert dialect_of_error(PyMySQLError(1213, "Deadlock found")) == (MYSQL, 1213)

    class PgError(Exception):
        sqlstate = "40001"

    assert dialect_of_error(PgError("could not serialize")) == (GENERIC, "40001")
    assert dialect_of_error(ValueError("no code")) == (GENERIC, None)
