"""The real backend: SQLAlchemy async engines (aiomysql, aiosqlite) behind the bridge.

Imported only when a :class:`~gochat_actors.db.DBManager` runs on it, so importing
:mod:`gochat_actors` loads neither SQLAlchemy nor a driver.

Every I/O call is one crossing of the bridge: the sync function given to
:meth:`_Handle.call` runs on the asyncio side under SQLAlchemy's ``run_sync`` (a
greenlet), so it may do several statements for the price of one crossing.

What differs between SQL dialects is asked of the URL's
:class:`~gochat_actors.db._dialect.Dialect` (``_backends.py``): the engine's URL, pool
and connect arguments, a hook on new connections, the replication probe, how a
statement left running is ended. An :attr:`~Dialect.exclusive` dialect (SQLite) keeps
one connection that sessions take turns on (:attr:`SQLAlchemyServer.exclusive`), and
its calls are shielded from cancellation (see ``_sqlite.py``); the cancellation is
delivered as soon as the statement returns.

**No connection is left to the garbage collector.** A server knows its sessions; closing
it (its actor stopping) refuses new ones, gives those in flight part of the deadline to
end, closes the rest under their users (invalidated: the server rolls them back), and
only then disposes of the engine. The asyncio loop can close first (the bridge stopped):
a guard task on the loop then does the same while the loop still runs. A connection
comes back to the pool without a ROLLBACK unless it is inside a transaction, so a
cancellation never lands in a pool reset.

A dialect with a :attr:`~Dialect.probe_pool` (MySQL) gives the probes (``ping``,
``probe``, a ``KILL QUERY``) an engine of their own, outside the sessions' pool: a pool
that its sessions hold to the last connection is not a server that does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

import trio
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.util import greenlet_spawn

from .._exceptions import BridgeNotRunning, DBError, DBUnavailable
from ..log import get_logger
from ._backends import dialect
from ._errors import driver_code, is_db_failure, translate, watch_driver_errors
from ._protocol import COMMIT_GRACE, CommitState, ReplicaStatus, ServerRole, end_session
from ._sockets import OpenSockets
from ._tracked import TrackedSession

if TYPE_CHECKING:
    from .._bridge import Bridge
    from .._dsn import Dsn
    from ..metrics import Metrics

__all__ = ["SQLAlchemyBackend", "SQLAlchemyServer"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

DRAIN_SHARE = 0.5
"""Share of its closing deadline a server gives its sessions in flight to end on their own."""

CLOSE_BUDGET = 5.0
"""Seconds :meth:`SQLAlchemyServer.aclose` takes as its deadline when it runs without one."""

GUARD_TIMEOUT = 2.0
"""Seconds the asyncio side gets to close a server's connections when its loop closes."""

DISCARD_TIMEOUT = 1.0
"""Seconds a session's connection gets to be invalidated (shielded) when it is discarded."""

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
        self.dialect = dialect(url)
        self.exclusive: trio.Lock | None = trio.Lock() if self.dialect.exclusive else None
        self._pool_size = pool_size
        self._metrics = metrics
        self._engine: AsyncEngine | None = None
        self._probe_engine: AsyncEngine | None = None  # the probes' own (dialect.probe_pool)
        self._replica_probe = self.dialect.replica_probe()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the engine lives on
        self._guard: asyncio.Task[None] | None = None
        self._closing = False
        self._handles: set[_Handle] = set()  # sessions in flight
        self._orphans: set[_Handle] = set()  # released, still holding a connection
        self._drained: trio.Event | None = None
        self._active = 0  # crossings running on the asyncio side
        self._quiet: asyncio.Event | None = None
        self._sockets = OpenSockets()  # its connections' sockets, closed last

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
        url, extra = self.dialect.engine_args(self.url, pool_size=self._pool_size)
        options: dict[str, Any] = {"hide_parameters": True, "pool_reset_on_return": None, **extra}
        try:
            engine = create_async_engine(url, **options)
            if self.dialect.probe_pool is not None:
                options.update(self.dialect.probe_pool)
                self._probe_engine = create_async_engine(url, **options)
        except ImportError as exc:  # the driver is an optional dependency
            hint = self.dialect.driver_hint
            raise DBError(
                f"{self.url.scheme}:// needs its driver {exc.name or exc}: {hint}"
            ) from exc
        watch_driver_errors(engine.sync_engine)
        self._sockets.watch(engine)  # its close ends with their sockets closed (none: SQLite)
        if self._probe_engine is not None:
            watch_driver_errors(self._probe_engine.sync_engine)
            self._sockets.watch(self._probe_engine)
        event.listen(engine.sync_engine.pool, "reset", _reset)
        hook = self.dialect.connect_hook(self.url)
        if hook is not None:
            event.listen(engine.sync_engine.pool, "connect", hook)
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
        try:
            if probes is not None:
                await probes.dispose()
            await engine.dispose()
        finally:
            # aiomysql's close returns before its socket is closed (over TLS that waits
            # for the server's reply): none is left open to a loop about to close.
            await self._sockets.close()
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
        """The probes' engine: their own (a dialect's ``probe_pool``), else the pool."""
        engine = self.engine  # raises before open()
        return self._probe_engine or engine

    async def ping(self) -> None:
        """``SELECT 1`` on the probes' connection."""
        await self._cross(_exec, self._probes, "SELECT 1")

    async def probe(self) -> ReplicaStatus:
        """``SELECT 1``, then the dialect's replication status (``SHOW REPLICA STATUS``
        or ``SHOW SLAVE STATUS`` on MySQL), on the same connection."""
        status: ReplicaStatus = await self._cross(self._probe, self._probes)
        return status

    async def _probe(self, engine: AsyncEngine) -> ReplicaStatus:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
            return await self._replica_probe.status(conn)

    async def kill_query(self, connection_id: int) -> None:
        """End the statement running on server connection ``connection_id`` (``KILL
        QUERY`` on MySQL) on the probes' connection; failures are logged, never raised
        (the statement may have ended meanwhile). Nothing where the dialect cannot."""
        sql = self.dialect.kill_statement(connection_id)
        if sql is None:
            return
        try:
            await self._cross(_exec, self._probes, sql)
        except DBError as exc:
            if not self.dialect.kill_raced(driver_code(exc)):
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
        """One crossing, errors translated; shielded when the dialect is exclusive.

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
            if not self.dialect.exclusive:  # inside() is async: the coroutine runs nothing yet
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
        """A call ended without its reply (cancelled, the connection lost): end what its
        connection may still run on the server (where the dialect can: ``KILL QUERY`` on
        MySQL), whose row locks would otherwise outlive our "rolled back" (the server
        notices a closed connection only when the statement is done). On the probes'
        connection, shielded, bounded."""
        session = self.session
        connection_id = session.connection_id
        if connection_id is None or not session.in_transaction():
            return  # no connection of ours is in a transaction: nothing runs for us
        with trio.move_on_after(DISCARD_TIMEOUT, shield=True):
            await self._server.kill_query(connection_id)

    def _kill(self, reason: str) -> None:
        """Its server is closing: no more calls; the one in flight (if any) is cancelled
        on the asyncio side (an exclusive dialect's ends first: see the module docstring)."""
        self._lost = self._lost or reason
        if self._task is not None and not self._server.dialect.exclusive:
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


async def _exec(engine: AsyncEngine, sql: str) -> None:
    async with engine.connect() as conn:
        await conn.exec_driver_sql(sql)
