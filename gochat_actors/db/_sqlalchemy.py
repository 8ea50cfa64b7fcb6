"""The real backend: SQLAlchemy async engines (aiomysql, aiosqlite) behind the bridge.

Imported only when a :class:`~gochat_actors.db.DBManager` runs on it, so importing
:mod:`gochat_actors` loads neither SQLAlchemy nor a driver.

Every I/O call is one crossing of the bridge: the sync function given to
:meth:`_Handle.call` runs on the asyncio side under SQLAlchemy's ``run_sync`` (a
greenlet), so it may do several statements for the price of one crossing.

SQLite (``sqlite+aiosqlite``) keeps a single connection for ``:memory:``: sessions take
turns (:attr:`SQLAlchemyServer.exclusive`), and calls are shielded from cancellation
(a cancelled statement would invalidate that connection, and with it the database); the
cancellation is delivered as soon as the statement returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

import sqlalchemy as sa
import trio
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from .._exceptions import DBError
from ._errors import DRIVER_ERRORS, driver_code, translate
from ._protocol import ReplicaStatus, ServerRole, end_session

if TYPE_CHECKING:
    from .._bridge import Bridge
    from .._dsn import Dsn
    from ..metrics import Metrics

__all__ = ["SQLAlchemyBackend", "SQLAlchemyServer"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

CONNECT_TIMEOUT = 10.0
"""Seconds aiomysql waits for a new connection's handshake."""

POOL_RECYCLE = 3600.0
"""Seconds after which a pooled MySQL connection is replaced (below ``wait_timeout``)."""

_STATUS_QUERIES = ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS")
_SYNTAX_ERROR, _DENIED = 1064, frozenset({1227, 1142, 1045})
_COUNTED = "gochat_counted"  # in a pool record's info: counted in db_connections_active
_CATCH: tuple[type[BaseException], ...] = (SQLAlchemyError, *DRIVER_ERRORS)


class SQLAlchemyBackend:
    """Servers on SQLAlchemy async engines, their I/O run on ``bridge``'s asyncio loop.

    Example::

        backend = SQLAlchemyBackend(bridge)
        server = backend.server(settings.primary, name="primary", role="primary",
                                pool_size=10, metrics=None)
    """

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def server(
        self, url: Dsn, *, name: str, role: ServerRole, pool_size: int, metrics: Metrics | None
    ) -> SQLAlchemyServer:
        """A server for ``url`` (its engine is made by :meth:`SQLAlchemyServer.open`)."""
        return SQLAlchemyServer(
            url, name=name, role=role, bridge=self.bridge, pool_size=pool_size, metrics=metrics
        )


class SQLAlchemyServer:
    """One AsyncEngine (and its pool) for one URL."""

    def __init__(
        self,
        url: Dsn,
        *,
        name: str,
        role: ServerRole,
        bridge: Bridge,
        pool_size: int,
        metrics: Metrics | None,
    ) -> None:
        self.name = name
        self.role: ServerRole = role
        self.url = url
        self.bridge = bridge
        self.sqlite = url.scheme.startswith("sqlite")
        self.exclusive: trio.Lock | None = trio.Lock() if self.sqlite else None
        self._pool_size = pool_size
        self._metrics = metrics
        self._engine: AsyncEngine | None = None
        self._status_query = 0  # index into _STATUS_QUERIES that works here

    def __repr__(self) -> str:
        return f"<SQLAlchemyServer {self.name} {self.url}>"

    @property
    def engine(self) -> AsyncEngine:
        """The engine; raises :class:`~gochat_actors.DBError` before :meth:`open`."""
        if self._engine is None:
            raise DBError(f"database server {self.name} is not open")
        return self._engine

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        """Create the engine on the asyncio side (no connection yet)."""
        if self._engine is None:
            self._engine = await self._cross(self._create_engine)

    async def _create_engine(self) -> AsyncEngine:
        options: dict[str, Any] = {"hide_parameters": True}
        if not self.sqlite:
            options.update(
                pool_size=self._pool_size,
                max_overflow=0,
                pool_recycle=POOL_RECYCLE,
                connect_args={"connect_timeout": CONNECT_TIMEOUT},
            )
        try:
            engine = create_async_engine(self.url.reveal(), **options)
        except ImportError as exc:  # the driver is an optional dependency
            mysql = self.url.scheme.startswith("mysql")
            hint = "pip install 'gochat-actors[mysql]'" if mysql else "pip install aiosqlite"
            raise DBError(
                f"{self.url.scheme}:// needs its driver {exc.name or exc}: {hint}"
            ) from exc
        gauge = self._metrics.db_connections_active if self._metrics else None
        if gauge is not None:

            def checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
                record.info[_COUNTED] = True
                gauge.inc()

            def checkin(dbapi_conn: Any, record: Any) -> None:
                if record is not None and record.info.pop(_COUNTED, False):
                    gauge.dec()  # not for a connection that failed before its checkout

            event.listen(engine.sync_engine.pool, "checkout", checkout)
            event.listen(engine.sync_engine.pool, "checkin", checkin)
        return engine

    async def aclose(self) -> None:
        """Dispose of the engine: close its pooled connections."""
        engine, self._engine = self._engine, None
        if engine is not None:
            await self._cross(engine.dispose)

    # -- probes ----------------------------------------------------------------------
    async def ping(self) -> None:
        """``SELECT 1`` on a pooled connection."""
        await self._cross(_ping, self.engine)

    async def probe(self) -> ReplicaStatus:
        """``SELECT 1`` then ``SHOW REPLICA STATUS`` (or ``SHOW SLAVE STATUS``)."""
        if self.sqlite:
            await self.ping()
            return ReplicaStatus(is_replica=False, io_running=False, sql_running=False, lag=None)
        status: ReplicaStatus = await self._cross(self._probe, self.engine)
        return status

    async def _probe(self, engine: AsyncEngine) -> ReplicaStatus:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
            while True:
                query = _STATUS_QUERIES[self._status_query]
                try:
                    row = (await conn.exec_driver_sql(query)).mappings().first()
                except sa.exc.DBAPIError as exc:
                    code = driver_code(exc)
                    if code == _SYNTAX_ERROR and self._status_query + 1 < len(_STATUS_QUERIES):
                        self._status_query += 1  # an older server: SHOW SLAVE STATUS
                        continue
                    if code in _DENIED:
                        return ReplicaStatus(
                            is_replica=True, io_running=True, sql_running=True, lag=0.0, known=False
                        )
                    raise
                return _status(row)

    # -- sessions --------------------------------------------------------------------
    def session(self) -> _Handle:
        """A new AsyncSession on this engine (``expire_on_commit=False``)."""
        return _Handle(self)

    async def _cross(self, fn: Callable[[*Ts], Any], *args: *Ts) -> Any:
        """One crossing, errors translated; shielded on SQLite (see the module docstring)."""
        try:
            if not self.sqlite:
                return await self.bridge.run_asyncio(fn, *args)
            with trio.CancelScope(shield=True):
                result = await self.bridge.run_asyncio(fn, *args)
            await trio.lowlevel.checkpoint_if_cancelled()
            return result
        except _CATCH as exc:
            raise translate(exc) from exc


class _Handle:
    """A DBSessionHandle on one AsyncSession."""

    __slots__ = ("_server", "_session")

    def __init__(self, server: SQLAlchemyServer) -> None:
        self._server = server
        self._session = AsyncSession(server.engine, expire_on_commit=False)

    @property
    def session(self) -> Session:
        return self._session.sync_session

    async def call(self, fn: Callable[[Session, *Ts], T], *args: *Ts) -> T:
        result: T = await self._server._cross(_run_sync, self._session, fn, args)
        return result

    async def finish(self, *, commit: bool) -> None:
        if not self._session.sync_session.in_transaction():
            self._session.sync_session.close()  # no connection held: nothing to send
            return
        await self._server._cross(_finish, self._session, commit)

    async def discard(self) -> None:
        if self._session.sync_session.in_transaction():
            with trio.move_on_after(1.0, shield=True):
                await self._server._cross(self._session.invalidate)


async def _run_sync(session: AsyncSession, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    return await session.run_sync(fn, *args)


async def _finish(session: AsyncSession, commit: bool) -> None:
    await session.run_sync(end_session, commit)  # one greenlet for both steps


async def _ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SELECT 1")


def _status(row: Any) -> ReplicaStatus:
    if row is None:
        return ReplicaStatus(is_replica=False, io_running=False, sql_running=False, lag=None)

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
