"""``Dialect``: what one SQL dialect needs that the shared SQLAlchemy backend does not know.

Each registered scheme (``db/_backends.py``) maps to one :class:`Dialect` object; the
server (``_sqlalchemy.py``), the manager and the error translation (``_errors.py``) ask
it instead of branching on a scheme: the engine's URL, pool and connect arguments (TLS),
a hook on new connections, whether sessions must take turns on one connection, how a
replica reports its state, how a statement left running is ended, and what the driver's
error codes mean. The defaults are those of a dialect without replicas, without
statement kills and with no code of its own.

Light to import: no SQLAlchemy, no driver (a dialect imports them inside its methods).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._protocol import ReplicaStatus

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncConnection

    from .._dsn import Dsn

__all__ = [
    "NOT_A_REPLICA",
    "Dialect",
    "ReplicaProbe",
    "driver_code",
    "driver_error",
    "engine_url",
]

NOT_A_REPLICA = ReplicaStatus(is_replica=False, io_running=False, sql_running=False, lag=None)
"""What a probe reports for a server that replicates from no one."""

ConnectHook = Callable[[Any, Any], None]
"""A pool ``connect`` listener: ``hook(dbapi_connection, record)``."""


def engine_url(url: Dsn) -> str:
    """``url`` in clear for the engine, its scheme as the settings read it (lower case,
    nothing before it): SQLAlchemy loads the dialect by the scheme's exact spelling,
    while the settings and the registry accepted ``SQLITE+AIOSQLITE://`` as
    ``sqlite+aiosqlite://``."""
    raw = url.reveal()
    return url.scheme + raw[raw.index("://") :]


class ReplicaProbe:
    """One server's replication probe, after its ``SELECT 1`` on the same connection;
    one per server (a probe may learn what the server understands). This one: a server
    that replicates from no one."""

    async def status(self, conn: AsyncConnection) -> ReplicaStatus:
        """The replication status, read on ``conn``."""
        return NOT_A_REPLICA


class Dialect:
    """The specifics of one SQL dialect on SQLAlchemy async (subclass, override).

    Example::

        class SQLiteDialect(Dialect):
            name = "SQLite"
            exclusive = True
    """

    name = "SQL"
    """How messages name it (``"SQLite"``, ``"MySQL/MariaDB"``)."""

    driver_hint = "install its driver"
    """What to install when its driver is missing."""

    replicas = False
    """Whether it has read replicas (and servers of its own may be one)."""

    exclusive = False
    """Whether a server is one connection that sessions take turns on; its calls are then
    shielded from cancellation (a cancelled statement would invalidate the connection,
    and with it the database), and a closing server lets a call in flight end."""

    probe_pool: dict[str, Any] | None = None
    """Pool options of an engine of the probes' own (outside the sessions' pool), or None:
    the probes use the sessions' pool."""

    def url_problems(self, url: Dsn) -> list[str]:
        """What is wrong in ``url`` beyond its scheme, one line each (for the settings)."""
        return []

    def engine_args(self, url: Dsn, *, pool_size: int) -> tuple[str | sa.URL, dict[str, Any]]:
        """The URL ``create_async_engine`` gets for ``url``, and the engine options of
        this dialect (pool, ``connect_args``); runs on the asyncio side."""
        return engine_url(url), {}

    def connect_hook(self, url: Dsn) -> ConnectHook | None:
        """A hook each new connection to ``url`` runs first, or None."""
        return None

    def private_memory(self, url: Dsn) -> bool:
        """Whether ``url`` names a private in-memory database that nothing else can reach
        (so it may run in place, as a :class:`~gochat_actors.db.MemoryDB`)."""
        return False

    def replica_probe(self) -> ReplicaProbe:
        """A new server's replication probe."""
        return ReplicaProbe()

    def kill_statement(self, connection_id: int) -> str | None:
        """The SQL that ends the statement running on server connection
        ``connection_id`` (sent on the probes' connection), or None: none can be ended
        from outside (the server is :attr:`exclusive`, or cannot)."""
        return None

    def kill_raced(self, code: int | str | None) -> bool:
        """Whether a failed kill only found the statement already ended (not worth a
        warning)."""
        return False

    # -- the driver's errors (see ``_errors.translate``) ------------------------------
    def claims(self, error: BaseException) -> bool:
        """Whether ``error`` (the driver's, holding its code) is one of this dialect's."""
        return False

    def unavailable(self, code: int | str) -> bool:
        """Whether error ``code`` means the server cannot be reached (or refused us)."""
        return False

    def timed_out(self, code: int | str) -> bool:
        """Whether error ``code`` is a timeout (a lock wait, a statement's time)."""
        return False

    def retryable(self, code: int | str) -> bool:
        """Whether error ``code`` is a deadlock or lock-wait failure: run the transaction
        again (SQLSTATE ``40001`` is retryable in every dialect)."""
        return False

    def bad_sql(self, message: str) -> bool:
        """Whether an error of no SQLAlchemy programming class, its message ``message``,
        is bad SQL all the same (a driver that reports it as an operational error)."""
        return False


def driver_error(exc: BaseException | None) -> tuple[BaseException, int | str] | None:
    """The driver's exception behind ``exc`` (a SQLAlchemy error or one of ours) that
    carries an error code, with that code: a MySQL/MariaDB errno (``1213``), a SQLSTATE
    string, or SQLite's primary result code. None: no code."""
    seen = 0
    while exc is not None and seen < 4:
        orig = getattr(exc, "orig", None)
        for candidate in (orig, exc):
            if candidate is None:
                continue
            sqlite = getattr(candidate, "sqlite_errorcode", None)
            if isinstance(sqlite, int):
                return candidate, sqlite & 0xFF
            args = getattr(candidate, "args", ())
            if args and isinstance(args[0], int) and not isinstance(args[0], bool):
                return candidate, args[0]
            for attr in ("sqlstate", "pgcode"):
                state = getattr(candidate, attr, None)
                if isinstance(state, str):
                    return candidate, state
        exc = exc.__cause__
        seen += 1
    return None


def driver_code(exc: BaseException | None) -> int | str | None:
    """The driver's error code behind ``exc`` (a SQLAlchemy error or one of ours).

    MySQL/MariaDB errno (``1213``), a SQLSTATE string, or SQLite's primary result code.

    Example::

        driver_code(err)   # 1062 for a duplicate key on MariaDB
    """
    found = driver_error(exc)
    return None if found is None else found[1]
