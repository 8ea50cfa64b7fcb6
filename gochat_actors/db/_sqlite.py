"""SQLite (``sqlite+aiosqlite://``): the embedded default, no replicas.

A server is one connection for ``:memory:``: sessions take turns, and calls are shielded
from cancellation (a cancelled statement would invalidate that connection, and with it
the database); the cancellation is delivered as soon as the statement returns. A SQLite
file database is switched to WAL (``PRAGMA journal_mode=WAL``): readers never block a
commit, so a read whose statement is left open (its crossing cut off when the bridge
stopped; the statement lives until the garbage collector finds it) cannot stall the
writers. "database is locked" (``SQLITE_BUSY``) is retryable, and SQLite's bad SQL comes
as an operational error whose message says so.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .._tls import MYSQL_TLS_PARAMS
from ._dialect import ConnectHook, Dialect

if TYPE_CHECKING:
    from .._dsn import Dsn

__all__ = ["SQLITE", "SQLiteDialect", "sqlite_file"]

SQLITE_BUSY = 5  # "database is locked": SQLite's lock wait ran out

_PROGRAMMING = re.compile(
    r"syntax error|no such (table|column|function)|has no column named|incomplete input"
    r"|already exists|wrong number of arguments",
    re.IGNORECASE,
)


def sqlite_file(url: Dsn) -> bool:
    """Whether a SQLite URL names a file (not ``:memory:`` nor a shared-cache memory db)."""
    return url.database not in ("", ":memory:") and url.query.get("mode") != "memory"


def _wal(dbapi_connection: Any, record: Any) -> None:
    """A new SQLite file connection: WAL journal (a no-op once the file is in WAL)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


class SQLiteDialect(Dialect):
    """SQLite through aiosqlite."""

    name = "SQLite"
    driver_hint = "pip install aiosqlite"
    exclusive = True

    def url_problems(self, url: Dsn) -> list[str]:
        """TLS parameters (``ssl_ca``...) are MySQL's: on a SQLite URL SQLAlchemy would
        ignore them with a warning, and the settings would seem to ask for TLS."""
        given = [name for name in MYSQL_TLS_PARAMS if name in url.query]
        if not given:
            return []
        return [f"{'/'.join(given)}: TLS is for mysql+aiomysql:// URLs, not {url.scheme}://"]

    def connect_hook(self, url: Dsn) -> ConnectHook | None:
        return _wal if sqlite_file(url) else None

    def private_memory(self, url: Dsn) -> bool:
        """``:memory:`` (or no path) with no query: a shared-cache or named memory
        database is reachable by other connections."""
        return url.database in ("", ":memory:") and not url.query

    def claims(self, error: BaseException) -> bool:
        """sqlite3's errors (aiosqlite raises them): they carry ``sqlite_errorcode``."""
        return hasattr(error, "sqlite_errorcode")

    def retryable(self, code: int | str) -> bool:
        return code == SQLITE_BUSY

    def bad_sql(self, message: str) -> bool:
        return _PROGRAMMING.search(message) is not None


SQLITE = SQLiteDialect()
