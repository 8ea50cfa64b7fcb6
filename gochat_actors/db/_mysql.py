"""MySQL/MariaDB (``mysql+aiomysql://``): a pool per server plus one connection of the
probes' own, TLS from the URL's ``ssl_ca``/``ssl_cert``/``ssl_key``, replicas probed
with ``SHOW REPLICA STATUS`` (``SHOW SLAVE STATUS`` on older servers), a statement left
running ended with ``KILL QUERY``, and the server's errno read.

The probes' connection is outside the pool: a pool that its sessions hold to the last
connection is not a server that does not answer, and must not eject a replica or mark
the primary down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._exceptions import DBError
from .._tls import MYSQL_TLS_PARAMS, mysql_tls_files
from ._dialect import NOT_A_REPLICA, Dialect, ReplicaProbe, driver_code, engine_url
from ._protocol import ReplicaStatus

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncConnection

    from .._dsn import Dsn

__all__ = ["MYSQL", "MySQLDialect", "mysql_tls"]

CONNECT_TIMEOUT = 10.0
"""Seconds aiomysql waits for a new connection's handshake."""

POOL_RECYCLE = 3600.0
"""Seconds after which a pooled MySQL connection is replaced (below ``wait_timeout``)."""

DEADLOCK, LOCK_WAIT_TIMEOUT = 1213, 1205
RETRYABLE_CODES = frozenset({DEADLOCK, LOCK_WAIT_TIMEOUT})

_UNAVAILABLE_CODES = frozenset(
    {1040, 1045, 1053, 1927, 2002, 2003, 2005, 2006, 2013, 2014, 2026, 2055, 4031}
)
_TIMEOUT_CODES = frozenset({LOCK_WAIT_TIMEOUT, 1969, 3024})
_STATUS_QUERIES = ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS")
_SYNTAX_ERROR, _DENIED, _UNKNOWN_THREAD = 1064, frozenset({1227, 1142, 1045}), 1094


def mysql_tls(dsn: Dsn) -> tuple[str | sa.URL, dict[str, Any]]:
    """``dsn`` for SQLAlchemy without its ``ssl_ca``/``ssl_cert``/``ssl_key`` parameters,
    and the ``connect_args`` that give aiomysql their ``ssl.SSLContext`` instead (aiomysql
    takes a context, not the file names SQLAlchemy would pass it). No TLS: unchanged."""
    files = mysql_tls_files(dsn.query)
    if not files:
        return engine_url(dsn), {}
    import sqlalchemy as sa

    url = sa.make_url(engine_url(dsn)).difference_update_query(MYSQL_TLS_PARAMS)
    return url, {"ssl": files.context(error=DBError)}


class _StatusProbe(ReplicaProbe):
    """``SHOW REPLICA STATUS``, or ``SHOW SLAVE STATUS`` once the server refused it."""

    def __init__(self) -> None:
        self._query = 0  # index into _STATUS_QUERIES that works here

    async def status(self, conn: AsyncConnection) -> ReplicaStatus:
        import sqlalchemy as sa

        while True:
            query = _STATUS_QUERIES[self._query]
            try:
                row = (await conn.exec_driver_sql(query)).mappings().first()
            except sa.exc.DBAPIError as exc:
                code = driver_code(exc)
                if code == _SYNTAX_ERROR and self._query + 1 < len(_STATUS_QUERIES):
                    self._query += 1  # an older server: SHOW SLAVE STATUS
                    continue
                if code in _DENIED:
                    return ReplicaStatus(
                        is_replica=True, io_running=True, sql_running=True, lag=0.0, known=False
                    )
                raise
            return _status(row)


def _status(row: Any) -> ReplicaStatus:
    if row is None:
        return NOT_A_REPLICA

    def field(*names: str) -> Any:
        for name in names:
            if name in row:
                return row[name]
        return None

    lag = field("Seconds_Behind_Master", "Seconds_Behind_Source")
    return ReplicaStatus(
        is_replica=True,
        io_running=field("Slave_IO_Running", "Replica_IO_Running") == "Yes",
        sql_running=field("Slave_SQL_Running", "Replica_SQL_Running") == "Yes",
        lag=None if lag is None else float(lag),
    )


class MySQLDialect(Dialect):
    """MySQL and MariaDB through aiomysql."""

    name = "MySQL/MariaDB"
    driver_hint = "pip install 'gochat-actors[mysql]'"
    replicas = True
    probe_pool = {"pool_size": 1, "max_overflow": 1}  # the probes, and one KILL QUERY

    def url_problems(self, url: Dsn) -> list[str]:
        """The TLS files the URL names (``?ssl_ca=...&ssl_cert=...&ssl_key=...``) exist,
        load, and come as a certificate with its key."""
        return mysql_tls_files(url.query).problems()

    def engine_args(self, url: Dsn, *, pool_size: int) -> tuple[str | sa.URL, dict[str, Any]]:
        target, connect_args = mysql_tls(url)
        options = {
            "pool_size": pool_size,
            "max_overflow": 0,
            "pool_recycle": POOL_RECYCLE,
            "connect_args": {"connect_timeout": CONNECT_TIMEOUT, **connect_args},
        }
        return target, options

    def replica_probe(self) -> ReplicaProbe:
        return _StatusProbe()

    def kill_statement(self, connection_id: int) -> str | None:
        return f"KILL QUERY {int(connection_id)}"

    def kill_raced(self, code: int | str | None) -> bool:
        return code == _UNKNOWN_THREAD

    def claims(self, error: BaseException) -> bool:
        """pymysql's (and aiomysql's) errors: ``args == (errno, message)``."""
        args = error.args
        return bool(args) and isinstance(args[0], int) and not isinstance(args[0], bool)

    def unavailable(self, code: int | str) -> bool:
        return code in _UNAVAILABLE_CODES

    def timed_out(self, code: int | str) -> bool:
        return code in _TIMEOUT_CODES

    def retryable(self, code: int | str) -> bool:
        return code in RETRYABLE_CODES


MYSQL = MySQLDialect()
