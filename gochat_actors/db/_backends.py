"""The database's backends by URL scheme: ``mysql+aiomysql://`` (MySQL/MariaDB) and
``sqlite+aiosqlite://`` (SQLite), each a :class:`~gochat_actors.db._dialect.Dialect` the
SQLAlchemy backend runs with (SQLAlchemy and the driver are imported only when a
:class:`~gochat_actors.db.DBManager` runs on it). The registry also checks ``[db]
primary`` and ``replicas`` (see :class:`~gochat_actors.db.DBSettings`), and tells the
error translation whose driver an error comes from. ``MemoryDB`` has no URL: it is
given to the manager as its ``backend``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._backends import Backends
from ._dialect import Dialect, driver_error
from ._mysql import MYSQL
from ._sqlite import SQLITE

if TYPE_CHECKING:
    from .._dsn import Dsn

__all__ = ["BACKENDS", "GENERIC", "dialect", "dialect_of_error"]

GENERIC = Dialect()
"""The dialect of an error no registered dialect claims: no code of its own."""

BACKENDS: Backends[Dialect] = Backends("db")
BACKENDS.add(MYSQL, "mysql+aiomysql")
BACKENDS.add(SQLITE, "sqlite+aiosqlite")


def dialect(url: Dsn) -> Dialect:
    """The dialect of ``url`` (its scheme's); ``ValueError`` naming the known schemes."""
    return BACKENDS.factory(url.scheme)


def dialect_of_error(exc: BaseException) -> tuple[Dialect, int | str | None]:
    """The dialect whose driver raised the error behind ``exc``, and that error's code
    (None: it carries none). When no dialect claims it: :data:`GENERIC`, which knows no
    code of its own."""
    found = driver_error(exc)
    if found is None:
        return GENERIC, None
    error, code = found
    for kind in BACKENDS.kinds():
        candidate = BACKENDS.factory(kind)
        if candidate.claims(error):
            return candidate, code
    return GENERIC, code
