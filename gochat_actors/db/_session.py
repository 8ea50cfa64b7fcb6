"""``DBSession``: a SQLAlchemy session used from trio.

Each awaited method is one crossing of the bridge (one asyncio task running the whole
call); ``add``/``add_all`` are bookkeeping, no I/O. Results come back fully buffered
(``prebuffer_rows``), so iterating them on the trio side does no I/O; ORM objects stay
loaded after commit (``expire_on_commit=False``). Lazy loading does I/O, so it cannot
happen on the trio side: load what you need eagerly (``selectinload``) or inside
:meth:`DBSession.run_sync`.

A reader session on a replica fails over while it has returned nothing: when the
replica is ejected (or a call on it finds it unreachable) while its first call is in
flight, the call is cancelled on the replica and run again on another healthy replica,
else on the primary (reads are safe to run twice). Once a call has returned, the
session has seen that replica's snapshot (and may hold its ORM objects): a failure then
raises :class:`~gochat_actors.DBUnavailable`, and the caller runs the read again.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from supervisors import cleanup_scope

from .._exceptions import DBCommitUnknown, DBError, DBTimeout, DBUnavailable
from .._tracing import NO_SPAN, db_statement_span, db_transaction_span
from ..log import get_logger
from ._classify import NO_TABLE, classify, table_label
from ._protocol import CommitState, DBServer, DBSessionHandle, commit_session
from ._router import Replica, ReplicaRouter

if TYPE_CHECKING:
    from sqlalchemy.engine import Result, ScalarResult
    from sqlalchemy.orm import Session


__all__ = ["DBSession", "Mode", "deadline_of", "open_session", "run_unit", "timed_out"]

T = TypeVar("T")

ROLLBACK_TIMEOUT = 2.0
"""Seconds a rollback (shielded from cancellation) may take before the connection is
dropped instead; the server then rolls back when it sees the connection close."""

_PREBUFFER = {"prebuffer_rows": True}
_log = get_logger("gochat_actors.db")


class Mode(enum.Enum):
    """How a session ends: see :meth:`DBManager.transaction`, ``writer``, ``reader``."""

    TRANSACTION = "transaction"  # one transaction: commit at the end, rollback on error
    WRITER = "writer"  # each call commits at once (autocommit)
    READER = "reader"  # never commits: ends with a rollback; may run on a replica


class DBSession:
    """A SQLAlchemy session bound to one server, used from trio.

    Got from ``db.transaction()``, ``db.writer()``, ``db.reader()`` or given to a
    ``db.with_transaction(fn)`` function; valid inside that block, in the task that
    opened it.

    Example::

        async with db.transaction() as session:
            await session.execute(text("INSERT INTO rooms (name) VALUES (:n)"), {"n": "go"})
            rows = (await session.execute(select(Room))).scalars().all()
    """

    __slots__ = (
        "_handle",
        "_locked",
        "_mode",
        "_replica",
        "_router",
        "_served",
        "_server",
        "_tried",
        "_wrote",
    )

    def __init__(self, router: ReplicaRouter, mode: Mode) -> None:
        self._router = router
        self._mode = mode
        self._server: DBServer | None = None
        self._handle: DBSessionHandle | None = None
        self._replica: Replica | None = None
        self._locked = False
        self._tried: set[str] = set()
        self._wrote = False
        self._served = False  # a call of it returned: it has seen its server's data

    def __repr__(self) -> str:
        server = self._server.name if self._server else "-"
        return f"<DBSession {self._mode.value} on {server}>"

    @property
    def server(self) -> str:
        """The name of the server serving this session now: ``"primary"``, ``"replica-0"``.

        Example::

            async with db.reader() as session:
                print(session.server)
        """
        if self._server is None:
            raise DBError("this session is closed")
        return self._server.name

    @property
    def wrote(self) -> bool:
        """True once this session ran a statement that may write (anything but a SELECT),
        or flushed ORM changes (a SELECT's autoflush included)."""
        if self._wrote:
            return True
        handle = self._handle
        if handle is not None and getattr(handle.session, "flushed", False):
            self._wrote = self._mode is not Mode.READER
        return self._wrote

    @property
    def sa_session(self) -> Session:
        """The underlying sync SQLAlchemy ``Session``, for bookkeeping that does no I/O
        (``new``, ``dirty``, ``expunge``). Do I/O with the async methods or :meth:`run_sync`.

        Example::

            pending = list(session.sa_session.new)
        """
        return self._live().session

    # -- statements ------------------------------------------------------------------
    async def execute(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: dict[str, Any] | None = None,
    ) -> Result[Any]:
        """Execute a statement (SQLAlchemy Core/ORM, ``text()``, or a SQL string); one crossing.

        Example::

            result = await session.execute(select(User).where(User.id == uid))
            user = result.scalar_one_or_none()
        """
        statement = _as_statement(statement)
        operation, table = classify(statement)
        result: Result[Any] = await self._io(
            operation, table, _execute, statement, params, execution_options
        )
        return result

    async def scalar(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: dict[str, Any] | None = None,
    ) -> Any:
        """The first column of the first row, or None.

        Example::

            count = await session.scalar(text("SELECT COUNT(*) FROM messages"))
        """
        result = await self.execute(statement, params, execution_options=execution_options)
        return result.scalar()

    async def scalars(
        self,
        statement: Any,
        params: Any = None,
        *,
        execution_options: dict[str, Any] | None = None,
    ) -> ScalarResult[Any]:
        """The first column of every row.

        Example::

            users = (await session.scalars(select(User))).all()
        """
        result = await self.execute(statement, params, execution_options=execution_options)
        return result.scalars()

    async def get(self, entity: type[T], ident: Any, **options: Any) -> T | None:
        """An ORM object by primary key (from the identity map when already loaded).

        Example::

            user = await session.get(User, 42)
        """
        found: T | None = await self._io(
            "select", _table_of(entity), _get, entity, ident, options, write=False
        )
        return found

    def add(self, instance: object) -> None:
        """Add an ORM object; it is written at the next flush, statement or commit (no I/O).

        Example::

            session.add(User(name="ada"))
        """
        self._live().session.add(instance)
        self._note_write()

    def add_all(self, instances: Iterable[object]) -> None:
        """Add several ORM objects (no I/O).

        Example::

            session.add_all([User(name="ada"), User(name="bob")])
        """
        self._live().session.add_all(instances)
        self._note_write()

    async def delete(self, instance: object) -> None:
        """Mark an ORM object for deletion (loads what its cascades need).

        Example::

            await session.delete(user)
        """
        await self._io("delete", _table_of(type(instance)), _delete, instance)

    async def flush(self) -> None:
        """Write pending ORM changes now (inside the transaction).

        Example::

            session.add(user)
            await session.flush()      # user.id is set now
        """
        await self._io("flush", NO_TABLE, _flush)

    async def refresh(self, instance: object, attribute_names: Iterable[str] | None = None) -> None:
        """Reload an ORM object's attributes from the database.

        Example::

            await session.refresh(user, ["name"])
        """
        names = None if attribute_names is None else list(attribute_names)
        await self._io("select", _table_of(type(instance)), _refresh, instance, names, write=False)

    async def merge(self, instance: T) -> T:
        """Copy an object's state into this session (loading it if needed); return the copy.

        Example::

            user = await session.merge(detached_user)
        """
        merged: T = await self._io("other", _table_of(type(instance)), _merge, instance)
        return merged

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(sync_session, *args)`` where the session may do I/O: one crossing for
        the whole function, however many statements it runs (lazy loads included).

        Example::

            def archive(s: Session, room_id: int) -> int:
                room = s.get(Room, room_id)
                room.archived = True
                return len(room.messages)          # a lazy load: fine in here

            count = await session.run_sync(archive, 42)
        """
        result: T = await self._io("other", NO_TABLE, fn, *args)
        return result

    # -- internals -------------------------------------------------------------------
    def _live(self) -> DBSessionHandle:
        if self._handle is None:
            raise DBError("this session is closed (use it inside its `async with` block)")
        return self._handle

    def _note_write(self) -> None:
        if self._mode is not Mode.READER:
            self._wrote = True

    async def _io(
        self, operation: str, table: str, fn: Callable[..., Any], *args: Any, write: bool = True
    ) -> Any:
        mode, router = self._mode, self._router
        if write and operation != "select" and mode is not Mode.READER:
            self._wrote = True
        metrics = router.metrics
        # Each call of a writer commits: see _committed (raises here if the session is closed).
        state = self._live().commit_state() if mode is Mode.WRITER else None
        span = db_statement_span(router.settings.primary, operation, table)  # started
        timer = metrics.time_db_query(operation, table) if metrics is not None else None
        # Then the call's coroutine (async defs all: none runs until awaited), and nothing
        # that may raise before the span is entered and the coroutine awaited.
        if state is not None:
            run = functools.partial(self._call, _then_commit, fn, args, state)
            call = self._committed(state, run)
        elif self._handle is not None and self._replica is None:  # the hot path
            call = self._handle.call(fn, *args)
        else:
            call = self._call(fn, *args)
        if span is NO_SPAN:  # spans off: no with-block for nothing
            if timer is None:
                return await call
            with timer:
                return await call
        with span:
            if timer is None:
                return await call
            with timer:
                return await call

    async def _committed(
        self, state: CommitState, run: Callable[[], Any], *, sticky: bool = False
    ) -> Any:
        """Await ``run()``, a call that ends with a COMMIT, and say how it ended.

        Returned: committed. Raised before the COMMIT was sent: rolled back, the error
        (or cancellation) as it is. A cancellation after the COMMIT is done: committed,
        the result is returned and the cancellation lands at the caller's next
        checkpoint. Sent, and no reply (the connection lost, or the cancellation's grace
        ran out): :class:`~gochat_actors.DBCommitUnknown`. Read-your-writes counts a
        commit that happened or may have (``sticky``: whether or not it wrote)."""
        try:
            result = await run()
        except BaseException as exc:
            if state.done:  # what cut it off came after the COMMIT's reply
                self._commit_seen(sticky)
                if isinstance(exc, trio.Cancelled | DBError):
                    return state.result
                raise
            if not state.sent or not isinstance(exc, trio.Cancelled | DBUnavailable):
                raise  # rolled back (the server said so, or nothing was sent)
            self._commit_seen(sticky)
            server = self._server_name()
            _log.warning("db.commit_outcome_unknown", server=server, error=repr(exc))
            why = "cancelled" if isinstance(exc, trio.Cancelled) else f"{exc}"
            raise DBCommitUnknown(
                f"the COMMIT was sent to {server} but its reply never came ({why}): "
                "the transaction may or may not have committed"
            ) from exc
        self._commit_seen(sticky)
        return result

    def _commit_seen(self, sticky: bool) -> None:
        if sticky or self.wrote:
            self._router.mark_sticky()

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        while True:
            handle, replica = self._live(), self._replica
            if replica is None:
                return await handle.call(fn, *args)
            reason, cause = "ejected", None
            if replica.admitted:
                scope = trio.CancelScope()
                replica.call_started(scope)
                try:
                    with scope:
                        result = await handle.call(fn, *args)
                        self._served = True
                        return result
                except DBUnavailable as exc:
                    reason, cause = f"read failed: {exc}", exc
                    self._router.eject(replica, reason)
                finally:
                    replica.call_ended(scope)
            if self._served or handle.session.new:
                # It has seen this replica's data (ORM objects loaded, results read):
                # going on elsewhere would mix two servers' snapshots, and its objects
                # belong to this session. The caller runs the whole read again.
                raise DBUnavailable(
                    f"{replica.name} failed ({reason}) after this read session returned "
                    "results; a read session keeps one server's snapshot, so it does not "
                    "move to another: run it again"
                ) from cause
            await self._failover(replica, reason)

    async def _open_on(
        self, route: Callable[[], Awaitable[tuple[DBServer, Replica | None]]]
    ) -> None:
        """Open this session on the server ``route()`` picks. One that stopped after it was
        picked (its actor is restarting: it opens no new session) is passed over for the
        next (the next incarnation, another replica)."""
        while True:
            server, replica = await route()
            try:
                await self._attach(server, replica)
                return
            except DBUnavailable:
                if self._router.current_server(replica) is server:
                    raise

    async def _attach(self, server: DBServer, replica: Replica | None) -> None:
        """Take ``server`` (its turn first, on SQLite) and open a session on it."""
        if server.exclusive is not None:
            try:
                await server.exclusive.acquire()
            except RuntimeError:
                # This task holds the server's one session. A reader may still read
                # what is committed there, if the server offers it (MemoryDB does).
                snapshot = getattr(server, "snapshot_session", None)
                if self._mode is Mode.READER and snapshot is not None:
                    self._handle = snapshot()
                    self._server, self._replica = server, replica
                    return
                raise DBError(
                    f"this task already has a session open on {server.name!r}, which serves "
                    "one session at a time (SQLite): use that session"
                ) from None
            self._locked = True
        try:
            self._handle = server.session()
        except BaseException:
            self._detach(server)
            raise
        self._server, self._replica = server, replica

    def _detach(self, server: DBServer | None = None) -> None:
        server = server or self._server
        if self._handle is not None:
            self._handle.release()
        if self._locked and server is not None and server.exclusive is not None:
            server.exclusive.release()
        self._locked = False
        self._handle = None

    async def _failover(self, replica: Replica, reason: str) -> None:
        self._tried.add(replica.name)
        await self._drop()
        await self._open_on(functools.partial(self._router.route_read, exclude=self._tried))
        target = self._server_name()
        _log.info("db.read_failover", origin=replica.name, target=target, reason=reason)

    async def _end(self) -> None:
        """Leave the block normally: commit (transaction, writer) or roll back (reader).

        A cancellation already pending rolls back; once the COMMIT is sent, see
        :meth:`_committed`. When this raises, the session is released or dropped."""
        handle = self._live()
        if handle.lost:  # its server stopped under it and rolled it back
            if self._mode is not Mode.READER:
                await handle.finish(commit=True)  # raises DBUnavailable, saying so
            return
        s = handle.session
        if self._mode is Mode.READER:
            if s.in_transaction():
                await self._release(quietly=True)
            return
        pending = bool(s.new or s.dirty or s.deleted)
        if pending:
            self._wrote = True
        if not (pending or s.in_transaction()):
            return
        state = handle.commit_state()
        finish = functools.partial(handle.finish, commit=True, state=state)
        try:
            # A cancellation already pending: nothing is sent (SQLite's calls are
            # shielded, they would commit first).
            await trio.lowlevel.checkpoint_if_cancelled()
            metrics = self._router.metrics
            if metrics is None:
                await self._committed(state, finish)
            else:
                with metrics.time_db_query("commit", NO_TABLE):
                    await self._committed(state, finish)
        except BaseException:
            if state.sent:
                await self._drop()  # its reply never came: never reuse the connection
            else:
                await self._release(quietly=True)
            raise

    async def _release(self, *, quietly: bool) -> None:
        """Roll back and let the connection go: shielded and bounded, never raising when
        ``quietly``; past the bound (or when its replica is ejected) the connection is
        dropped instead."""
        handle, replica = self._handle, self._replica
        if handle is None:
            return
        done = False
        with cleanup_scope(timeout=ROLLBACK_TIMEOUT) as scope:
            if replica is not None:
                replica.call_started(scope)
            try:
                await handle.finish(commit=False)
                done = True
            except DBError as exc:
                if not quietly:
                    raise
                _log.warning("db.rollback_failed", server=self._server_name(), error=str(exc))
            finally:
                if replica is not None:
                    replica.call_ended(scope)
        if done:
            self._detach()
            return
        if scope.cancelled_caught:
            _log.warning("db.rollback_abandoned", server=self._server_name())
        await self._drop()

    async def _drop(self) -> None:
        """Let the session go without a rollback (its server is gone or hung)."""
        handle = self._handle
        try:
            if handle is not None:
                await handle.discard()
        finally:
            self._detach()  # whatever happens, the server (its turn) is given back

    def _server_name(self) -> str:
        return self._server.name if self._server else "-"


@asynccontextmanager
async def open_session(
    router: ReplicaRouter, mode: Mode, *, consistent: bool = False, timeout: float | None = None
) -> AsyncIterator[DBSession]:
    """A session of ``mode`` for the ``async with`` block (what ``DBManager.transaction``,
    ``writer`` and ``reader`` return): opened on the server ``router`` picks, ended
    (committed or rolled back) when the block ends; ``timeout`` bounds it all."""
    deadline = deadline_of(timeout)
    session = DBSession(router, mode)
    span = db_transaction_span(router.settings.primary, mode.name.lower())
    # No timeout: no scope (nothing would cancel it; entering and leaving one costs).
    scope = trio.CancelScope(deadline=deadline) if deadline < math.inf else None
    with span, scope or nullcontext():
        if mode is Mode.READER:
            await session._open_on(functools.partial(router.route_read, consistent=consistent))
        else:
            await session._open_on(router.route_primary)
        try:
            yield session
        except BaseException:
            await session._release(quietly=True)
            raise
        try:
            await session._end()  # releases or drops the session itself if it raises
        finally:
            session._detach()
    # Its deadline passed before any COMMIT was sent (see DBSession._committed).
    if scope is not None and scope.cancelled_caught:
        raise timed_out(mode, timeout)


async def run_unit(router: ReplicaRouter, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """The whole transaction of a sync ``fn(session, *args)`` in one call (one crossing)."""
    session = DBSession(router, Mode.TRANSACTION)
    await session._open_on(router.route_primary)
    handle = session._live()
    state = handle.commit_state()
    metrics = router.metrics
    timer = metrics.time_db_query("transaction", NO_TABLE) if metrics else nullcontext()
    try:
        with timer:
            run = functools.partial(handle.call, _unit, fn, args, state)
            result: T = await session._committed(state, run, sticky=True)
    except BaseException:
        await session._drop()
        raise
    session._detach()
    return result


def _unit(session: Session, fn: Callable[..., T], args: tuple[Any, ...], state: CommitState) -> T:
    try:
        result = fn(session, *args)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(
                f"with_transaction: {fn!r} returned an awaitable; pass an async function "
                "itself (it runs on the trio side), or a plain function"
            )
        state.result = result
        commit_session(session, state)
        return result
    except BaseException:
        if not state.sent:
            with contextlib.suppress(Exception):  # connection gone: the server rolls back
                session.rollback()
        raise
    finally:
        session.close()


def deadline_of(timeout: float | None) -> float:
    if timeout is None:
        return math.inf
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout >= 0:
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    return trio.current_time() + timeout


def timed_out(mode: Mode, timeout: float | None) -> DBTimeout:
    what = "transaction" if mode is Mode.TRANSACTION else f"{mode.value} session"
    return DBTimeout(f"{what} timed out after {timeout:g}s; rolled back")


def _as_statement(statement: Any) -> Any:
    if isinstance(statement, str):
        from sqlalchemy import text

        return text(statement)
    return statement


def _table_of(entity: Any) -> str:
    name = getattr(entity, "__tablename__", None)
    return table_label(name) if isinstance(name, str) else NO_TABLE


def _execute(
    session: Session, statement: Any, params: Any, options: dict[str, Any] | None
) -> Result[Any]:
    merged = {**options, **_PREBUFFER} if options else _PREBUFFER
    return session.execute(statement, params, execution_options=merged)


def _get(session: Session, entity: Any, ident: Any, options: dict[str, Any]) -> Any:
    return session.get(entity, ident, **options)


def _delete(session: Session, instance: object) -> None:
    session.delete(instance)


def _flush(session: Session) -> None:
    session.flush()


def _refresh(session: Session, instance: object, names: list[str] | None) -> None:
    session.refresh(instance, names)


def _merge(session: Session, instance: T) -> T:
    return session.merge(instance)


def _then_commit(
    session: Session, fn: Callable[..., T], args: tuple[Any, ...], state: CommitState
) -> T:
    result = fn(session, *args)
    state.result = result
    commit_session(session, state)
    return result
