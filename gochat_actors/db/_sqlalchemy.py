"""The real backend: SQLAlchemy async engines (aiomysql, aiosqlite) behind the bridge.

Imported only when a :class:`~gochat_actors.db.DBManager` runs on it, so importing
:mod:`gochat_actors` loads neither SQLAlchemy nor a driver.

Every I/O call is one crossing of the bridge: the sync function given to
:meth:`_Handle.call` runs on the asyncio side under SQLAlchemy's ``run_sync`` (a
greenlet), so it may do several statements for the price of one crossing.

SQLite (``sqlite+aiosqlite``) keeps a single connection for ``:memory:``: sessions take
turns (:attr:`SQLAlchemyServer.exclusive`), and calls are shielded from cancellation
(a cancelled statement would invalidate that connection, and with it the database); the
cancellation is delivered as soon as the statement returns. A SQLite file database is
switched to WAL (``PRAGMA journal_mode=WAL``): readers never block a commit, so a read
whose statement is left open (its crossing cut off when the bridge stopped; the
statement lives until the garbage collector finds it) cannot stall the writers.

**No connection is left to the garbage collector.** A server knows its sessions; closing
it (its actor stopping) refuses new ones, gives those in flight part of the deadline to
end, closes the rest under their users (invalidated: the server rolls them back), and
only then disposes of the engine. The asyncio loop can close first (the bridge stopped):
a guard task on the loop then does the same while the loop still runs. A connection
comes back to the pool without a ROLLBACK unless it is inside a transaction, so a
cancellation never lands in a pool reset.

A MySQL server's probes (``ping``, ``probe``) have a connection of their own, outside the
pool: a pool that its sessions hold to the last connection is not a server that does not
answer, and must not eject a replica or mark the primary down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

import sqlalchemy as sa
import trio
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.util import greenlet_spawn

from .._exceptions import BridgeNotRunning, DBError, DBUnavailable
from .._tls import MYSQL_TLS_PARAMS, mysql_tls_files
from ..log import get_logger
from ._errors import driver_code, is_db_failure, translate, watch_driver_errors
from ._protocol import COMMIT_GRACE, CommitState, ReplicaStatus, ServerRole, end_session
from ._tracked import TrackedSession

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

DRAIN_SHARE = 0.5
"""Share of its closing deadline a server gives its sessions in flight to end on their own."""

CLOSE_BUDGET = 5.0
"""Seconds :meth:`SQLAlchemyServer.aclose` takes as its deadline when it runs without one."""

GUARD_TIMEOUT = 2.0
"""Seconds the asyncio side gets to close a server's connections when its loop closes."""

DISCARD_TIMEOUT = 1.0
"""Seconds a session's connection gets to be invalidated (shielded) when it is discarded."""

_STATUS_QUERIES = ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS")
_SYNTAX_ERROR, _DENIED, _UNKNOWN_THREAD = 1064, frozenset({1227, 1142, 1045}), 1094
_spawn: Callable[..., Coroutine[Any, Any, Any]] = greenlet_spawn
"""``fn(*args)`` in a greenlet where it may do I/O (what ``AsyncSession.run_sync`` awaits)."""
_COUNTED = "gochat_counted"  # in a pool record's info: counted in db_connections_active
_log = get_logger("gochat_actors.db")


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


def _mysql_tls(dsn: Dsn) -> tuple[str | sa.URL, dict[str, Any]]:
    """``dsn`` for SQLAlchemy without its ``ssl_ca``/``ssl_cert``/``ssl_key`` parameters,
    and the ``connect_args`` that give aiomysql their ``ssl.SSLContext`` instead (aiomysql
    takes a context, not the file names SQLAlchemy would pass it). No TLS: unchanged."""
    files = mysql_tls_files(dsn.query)
    if not files:
        return dsn.reveal(), {}
    url = sa.make_url(dsn.reveal()).difference_update_query(MYSQL_TLS_PARAMS)
    return url, {"ssl": files.context(error=DBError)}


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
        self._probe_engine: AsyncEngine | None = None  # MySQL: the probes' one connection
        self._status_query = 0  # index into _STATUS_QUERIES that works here
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the engine lives on
        self._guard: asyncio.Task[None] | None = None
        self._closing = False
        self._handles: set[_Handle] = set()  # sessions in flight
        self._orphans: set[_Handle] = set()  # released, still holding a connection
        self._drained: trio.Event | None = None
        self._active = 0  # crossings running on the asyncio side
        self._quiet: asyncio.Event | None = None

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
            try:
                self._loop = self.bridge.loop
            except BridgeNotRunning as exc:
                raise translate(exc) from exc
            self._engine = await self._cross(self._create_engine)

    async def _create_engine(self) -> AsyncEngine:
        options: dict[str, Any] = {"hide_parameters": True, "pool_reset_on_return": None}
        url: str | sa.URL = self.url.reveal()
        if not self.sqlite:
            url, connect_args = _mysql_tls(self.url)
            options.update(
                pool_size=self._pool_size,
                max_overflow=0,
                pool_recycle=POOL_RECYCLE,
                connect_args={"connect_timeout": CONNECT_TIMEOUT, **connect_args},
            )
        try:
            engine = create_async_engine(url, **options)
            if not self.sqlite:  # one connection for probes, one more for a KILL QUERY
                options.update(pool_size=1, max_overflow=1)
                self._probe_engine = create_async_engine(url, **options)
        except ImportError as exc:  # the driver is an optional dependency
            mysql = self.url.scheme.startswith("mysql")
            hint = "pip install 'gochat-actors[mysql]'" if mysql else "pip install aiosqlite"
            raise DBError(
                f"{self.url.scheme}:// needs its driver {exc.name or exc}: {hint}"
            ) from exc
        watch_driver_errors(engine.sync_engine)
        if self._probe_engine is not None:
            watch_driver_errors(self._probe_engine.sync_engine)
        event.listen(engine.sync_engine.pool, "reset", _reset)
        if self.sqlite and _sqlite_file(self.url):
            event.listen(engine.sync_engine.pool, "connect", _wal)
        self._guard = asyncio.get_running_loop().create_task(self._guard_loop())
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
        """Close the server: refuse new sessions, let those in flight end (half the
        deadline), close the rest under their users, then dispose of the engine.

        Call it in a bounded scope (the actor's ``cleanup_scope()``); without a deadline
        it takes :data:`CLOSE_BUDGET` seconds at most.
        """
        self._closing = True
        if self._engine is None:
            return
        deadline = trio.current_effective_deadline()
        # A spent budget (the cleanup started past its deadline; -inf in a cancelled
        # scope) leaves no time to wait for anyone, and is no reason not to close.
        budget = max(0.0, deadline - trio.current_time()) if deadline < math.inf else CLOSE_BUDGET
        # Each wait shielded and bounded by its share: in a scope already cancelled (the
        # budget spent) an unshielded wait would end the close before the sessions in
        # flight are told and the pool is closed.
        with trio.move_on_after(budget * DRAIN_SHARE, shield=True):
            while self._handles:
                self._drained = trio.Event()
                await self._drained.wait()
        if self._handles:
            stuck = list(self._handles)
            _log.warning("db.sessions_closed", server=self.name, count=len(stuck))
            reason = f"database server {self.name} stopped while this session was in use"
            for handle in stuck:
                handle._kill(reason)
            with trio.move_on_after(budget * (1 - DRAIN_SHARE) / 2, shield=True):
                for handle in stuck:
                    await handle._wait_idle()
        # The pool is closed even with no budget left (shielded, bounded like a discard):
        # dropped unclosed, it would hold its connections until the process exits.
        left = deadline - trio.current_time() if deadline < math.inf else budget / 4
        try:
            with trio.move_on_after(max(left, DISCARD_TIMEOUT), shield=True):
                await self._cross(self._teardown, f"database server {self.name} stopped", False)
        except DBError:  # the loop is gone: its guard closed what it could
            pass
        finally:
            self._engine = self._probe_engine = None

    def _forget(self, handle: _Handle, *, orphan: bool = False) -> None:
        self._handles.discard(handle)
        if orphan:
            self._orphans.add(handle)
        else:
            self._orphans.discard(handle)
        if not self._handles and self._drained is not None:
            self._drained.set()

    async def _teardown(self, reason: str, wait: bool) -> None:
        """On the asyncio side: close every session's connection, then the pool's."""
        self._closing = True
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if wait and self._active:  # the loop is closing: crossings are unwinding
            self._quiet = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(GUARD_TIMEOUT / 2):
                    await self._quiet.wait()
        handles = [*self._handles, *self._orphans]
        self._handles.clear()
        self._orphans.clear()
        # All at once: on SQLite one connection's close can wait behind its statement,
        # itself waiting for a lock that another of these connections holds.
        closed = await asyncio.gather(*(handle._close_now(reason) for handle in handles))
        busy = closed.count(False)
        if busy:
            _log.warning("db.sessions_abandoned", server=self.name, count=busy)
        probes, self._probe_engine = self._probe_engine, None
        if probes is not None:
            await probes.dispose()
        await engine.dispose()
        if self._guard is not None and self._guard is not asyncio.current_task():
            self._guard.cancel()

    async def _guard_loop(self) -> None:
        """Lives on the loop as long as the engine; if the loop closes first (the bridge
        stopped), it closes what the server holds while the loop still runs."""
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            if self._engine is not None:
                try:
                    async with asyncio.timeout(GUARD_TIMEOUT):
                        await self._teardown("the asyncio bridge stopped", True)
                except Exception as exc:  # the loop is closing: log it and go on
                    _log.warning("db.close_failed", server=self.name, error=repr(exc))
            raise

    # -- probes ----------------------------------------------------------------------
    @property
    def _probes(self) -> AsyncEngine:
        """The probes' engine: their own connection on MySQL, the pool on SQLite."""
        engine = self.engine  # raises before open()
        return self._probe_engine or engine

    async def ping(self) -> None:
        """``SELECT 1`` on the probes' connection."""
        await self._cross(_ping, self._probes)

    async def probe(self) -> ReplicaStatus:
        """``SELECT 1`` then ``SHOW REPLICA STATUS`` (or ``SHOW SLAVE STATUS``)."""
        if self.sqlite:
            await self.ping()
            return ReplicaStatus(is_replica=False, io_running=False, sql_running=False, lag=None)
        status: ReplicaStatus = await self._cross(self._probe, self._probes)
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

    async def kill_query(self, connection_id: int) -> None:
        """``KILL QUERY <connection_id>`` on the probes' connection (MySQL); failures are
        logged, never raised (the statement may have ended meanwhile: 1094)."""
        try:
            await self._cross(_kill_query, self._probes, connection_id)
        except DBError as exc:
            if driver_code(exc) != _UNKNOWN_THREAD:
                _log.warning("db.kill_failed", server=self.name, error=str(exc))

    # -- sessions --------------------------------------------------------------------
    def session(self) -> _Handle:
        """A new AsyncSession on this engine (``expire_on_commit=False``)."""
        if self._closing:
            raise DBUnavailable(f"database server {self.name} is closing")
        handle = _Handle(self)
        self._handles.add(handle)
        return handle

    async def _cross(self, fn: Callable[[*Ts], Awaitable[Any]], *args: *Ts) -> Any:
        """One crossing, errors translated; shielded on SQLite (see the module docstring).

        Only on the loop the engine was made on: after a bridge restart it is gone.
        """
        return await self._bridged(self._tracked, fn, args)

    async def _bridged(
        self,
        inside: Callable[[Callable[[*Ts], Awaitable[T]], tuple[*Ts]], Coroutine[Any, Any, T]],
        fn: Callable[[*Ts], Awaitable[T]],
        args: tuple[*Ts],
        user_code: bool = False,
    ) -> T:
        """Run ``inside(fn, args)`` on the asyncio side (``inside`` counts the crossing).

        With ``user_code`` (it runs the user's function) only the database's errors are
        translated: the user's own come back as themselves."""
        try:
            if self.bridge.loop is not self._loop:
                raise BridgeNotRunning("the asyncio bridge restarted since this server opened")
            if not self.sqlite:  # inside() is an async def: the coroutine runs nothing yet
                return await self.bridge.run_coroutine(inside(fn, args))
            # A cancellation already pending: nothing is sent (the shield would hide it).
            await trio.lowlevel.checkpoint_if_cancelled()
            with trio.CancelScope(shield=True):
                result = await self.bridge.run_coroutine(inside(fn, args))
            await trio.lowlevel.checkpoint_if_cancelled()
            return result
        except Exception as exc:
            if isinstance(exc, DBError) or not is_db_failure(exc, user_code=user_code):
                raise
            raise translate(exc) from exc

    async def _tracked(self, fn: Callable[[*Ts], Awaitable[T]], args: tuple[*Ts]) -> T:
        self._active += 1
        try:
            return await fn(*args)
        finally:
            self._untrack()

    def _untrack(self) -> None:
        self._active -= 1
        if not self._active and self._quiet is not None:
            self._quiet.set()


class _Handle:
    """A DBSessionHandle on one AsyncSession, known to its server until released."""

    __slots__ = ("_busy", "_idle", "_lost", "_server", "_session", "_started", "_task")

    def __init__(self, server: SQLAlchemyServer) -> None:
        self._server = server
        self._session = AsyncSession(
            server.engine, expire_on_commit=False, sync_session_class=TrackedSession
        )
        self._busy = False  # a call is in flight (trio side)
        self._started = False  # its asyncio side has begun (it may be mid-statement)
        self._task: asyncio.Task[Any] | None = None  # its asyncio task, while it runs
        self._idle: trio.Event | None = None  # set when the call ends (for a waiting closer)
        self._lost = ""

    @property
    def session(self) -> TrackedSession:
        return self._session.sync_session  # type: ignore[return-value]

    @property
    def lost(self) -> str:
        return self._lost

    async def call(self, fn: Callable[[Session, *Ts], T], *args: *Ts) -> T:
        # AsyncSession.run_sync's own body, two coroutine frames less on each step.
        result: T = await self._run(_spawn, fn, self._session.sync_session, *args, user_code=True)
        return result

    async def finish(self, *, commit: bool, state: CommitState | None = None) -> None:
        if self._lost:
            if commit:
                raise DBUnavailable(f"{self._lost}: the transaction was rolled back")
            return
        if not self._session.sync_session.in_transaction():
            self._session.sync_session.close()  # no connection held: nothing to send
            if state is not None:
                state.done = True
            return
        # One greenlet for both steps (AsyncSession.run_sync's body).
        await self._run(_spawn, end_session, self._session.sync_session, commit, state)

    def commit_state(self) -> CommitState:
        return CommitState(functools.partial(self._server.bridge.cancel_grace, COMMIT_GRACE))

    async def discard(self) -> None:
        if self._lost or not self._session.sync_session.in_transaction():
            return
        with trio.move_on_after(DISCARD_TIMEOUT, shield=True), contextlib.suppress(DBError):
            await self._run(self._session.invalidate)  # else the server closes it later

    def release(self) -> None:
        self._server._forget(self, orphan=self._session.sync_session.in_transaction())

    async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any, user_code: bool = False) -> T:
        """One crossing for this session; its server may cut it off when it closes
        (:meth:`_kill`): the call then raises DBUnavailable, whatever it returned."""
        if self._lost:
            raise DBUnavailable(self._lost)
        self._busy, self._started = True, False
        try:
            result: T = await self._server._bridged(self._inside, fn, args, user_code)
        except BaseException as exc:
            if self._started and _unanswered(exc):  # a statement may still run there
                await self._kill_statement()
            if isinstance(exc, DBError) and self._lost:
                raise DBUnavailable(f"{self._lost} (during this call)") from exc
            raise
        finally:
            self._busy = False
            if self._idle is not None:
                self._idle.set()
                self._idle = None
        if self._lost:
            raise DBUnavailable(f"{self._lost} (during this call)")
        return result

    async def _inside(self, fn: Callable[[*Ts], Awaitable[T]], args: tuple[*Ts]) -> T:
        self._server._active += 1
        self._started = True
        self._task = asyncio.current_task(self._server._loop)  # (no lookup of the loop)
        try:
            if self._lost:  # cut off before it started
                raise DBUnavailable(self._lost)
            return await fn(*args)
        finally:
            self._task = None
            self._server._untrack()

    async def _kill_statement(self) -> None:
        """A call ended without its reply (cancelled, the connection lost): on MySQL, end
        what its connection may still run on the server, whose row locks would otherwise
        outlive our "rolled back" (the server notices a closed connection only when the
        statement is done). ``KILL QUERY`` on the probes' connection, shielded, bounded."""
        session = self.session
        connection_id = session.connection_id
        if connection_id is None or self._server.sqlite or not session.in_transaction():
            return  # no connection of ours is in a transaction: nothing runs for us
        with trio.move_on_after(DISCARD_TIMEOUT, shield=True):
            await self._server.kill_query(connection_id)

    def _kill(self, reason: str) -> None:
        """Its server is closing: no more calls; the one in flight (if any) is cancelled
        on the asyncio side (on SQLite it ends first: see the module docstring)."""
        self._lost = self._lost or reason
        if self._task is not None and not self._server.sqlite:
            self._task.cancel()

    async def _wait_idle(self) -> None:
        if self._busy:
            idle = self._idle = self._idle or trio.Event()
            await idle.wait()

    async def _close_now(self, reason: str) -> bool:
        """On the asyncio side: lose the session and close its connection (the server
        rolls back); False if a call is using it right now (it cannot be closed under it)."""
        self._lost = self._lost or reason
        if self._task is not None:
            return False
        if self._session.sync_session.in_transaction():
            with contextlib.suppress(Exception):
                await self._session.invalidate()
        return True


def _unanswered(exc: BaseException) -> bool:
    """Whether a call ended without the server's answer: cut off by a cancellation, or
    its connection lost (not an error the server replied with: the connection is then
    idle, and the session may go on)."""
    return isinstance(exc, trio.Cancelled) or (
        isinstance(exc, DBUnavailable) and not isinstance(exc.__cause__, BridgeNotRunning)
    )


def _sqlite_file(url: Dsn) -> bool:
    """Whether a SQLite URL names a file (not ``:memory:`` nor a shared-cache memory db)."""
    return url.database not in ("", ":memory:") and url.query.get("mode") != "memory"


def _wal(dbapi_connection: Any, record: Any) -> None:
    """A new SQLite file connection: WAL journal (a no-op once the file is in WAL)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def _reset(dbapi_connection: Any, record: Any, state: Any) -> None:
    """A connection back in the pool: roll it back only if it is inside a transaction.

    After a COMMIT or ROLLBACK (the usual case) that saves a round trip, and leaves no
    await where a cancellation could interrupt the reset (SQLAlchemy logs that as an
    error, "Exception during reset or similar"). A driver that cannot tell is rolled back.
    """
    if state.transaction_was_reset or not state.asyncio_safe:
        return
    if _in_transaction(getattr(dbapi_connection, "driver_connection", None)) is False:
        return
    dbapi_connection.rollback()


def _in_transaction(driver: Any) -> bool | None:
    """Whether the driver's connection is inside a transaction (no I/O); None: unknown."""
    try:
        status = getattr(driver, "get_transaction_status", None)  # aiomysql
        found = status() if callable(status) else getattr(driver, "in_transaction", None)
    except Exception:  # e.g. aiosqlite's "no active connection"
        return None
    return found if isinstance(found, bool) else None


async def _kill_query(engine: AsyncEngine, connection_id: int) -> None:
    async with engine.connect() as conn:
        await conn.exec_driver_sql(f"KILL QUERY {int(connection_id)}")


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
