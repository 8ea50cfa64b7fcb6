"""The small backend Protocol :class:`~gochat_actors.db.DBManager` runs on.

A backend makes :class:`DBServer` objects, one per configured URL (the primary and each
replica). A server hands out :class:`DBSessionHandle` objects, each a SQLAlchemy
``Session`` bound to that server. The handle's only I/O primitive is :meth:`~DBSessionHandle.call`:
run a *sync* function against the sync ``Session``, in one crossing. The real backend
runs it on the asyncio side of the bridge (SQLAlchemy's greenlet-based ``run_sync``);
the in-memory one calls it in place. Everything a trio-side session offers
(``execute``, ``get``, ``flush``...) is built on that one primitive, so both backends
share one facade.

Backends raise only :class:`~gochat_actors.DBError` subclasses (translated at their edge).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar, TypeVarTuple

if TYPE_CHECKING:
    import trio
    from sqlalchemy.orm import Session

    from .._dsn import Dsn
    from ..metrics import Metrics

__all__ = [
    "COMMIT_GRACE",
    "CommitState",
    "DBBackend",
    "DBServer",
    "DBSessionHandle",
    "ReplicaStatus",
    "ServerRole",
    "commit_session",
    "end_session",
]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

COMMIT_GRACE = 2.0
"""Seconds a COMMIT already sent gets to answer when its caller is cancelled (or its
``timeout=`` runs out): its reply tells whether it happened. Past that the outcome is
unknown: :class:`~gochat_actors.DBCommitUnknown`."""

ServerRole = Literal["primary", "replica"]
"""What a server is for: ``"primary"`` (writes, consistent reads) or ``"replica"``."""


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """What a replica's probe saw (``SHOW REPLICA STATUS``; the in-memory one fakes it).

    ``is_replica`` is False when the server reports no replication at all; ``known`` is
    False when it answered ``SELECT 1`` but would not show its replication status (no
    privilege), so only liveness is known. ``lag`` is ``Seconds_Behind_Master`` (None
    when the server does not know it, e.g. the SQL thread is stopped).

    Example::

        ReplicaStatus(is_replica=True, io_running=True, sql_running=True, lag=0.0)
    """

    is_replica: bool
    io_running: bool
    sql_running: bool
    lag: float | None
    known: bool = True


class CommitState:
    """How far one commit got, written where it runs (:func:`commit_session`), read by
    the trio side when the call did not return: not ``sent`` (nothing committed: rolled
    back), ``sent`` but not ``done`` (outcome unknown), ``done`` (committed; ``result``
    is what the unit returned).

    ``guard`` is entered around the COMMIT itself: the backend's way to let a
    cancellation wait for the reply (the bridge's ``cancel_grace``).

    Example::

        state = handle.commit_state()
        await handle.finish(commit=True, state=state)
    """

    __slots__ = ("done", "guard", "result", "sent")

    def __init__(self, guard: Callable[[], AbstractContextManager[object]] = nullcontext) -> None:
        self.guard = guard
        self.sent = False
        self.done = False
        self.result: object = None


class DBSessionHandle(Protocol):
    """One SQLAlchemy ``Session`` bound to one server, used from trio.

    ``session`` is the sync ``Session``: use it on the trio side only for bookkeeping
    that does no I/O (``add``, ``new``, ``in_transaction()``); do I/O with :meth:`call`.
    """

    @property
    def session(self) -> Session:
        """The sync SQLAlchemy ``Session`` (no I/O outside :meth:`call`)."""
        ...

    async def call(self, fn: Callable[[Session, *Ts], T], *args: *Ts) -> T:
        """Return ``fn(session, *args)``, run where the session may do I/O: one crossing."""
        ...

    async def finish(self, *, commit: bool, state: CommitState | None = None) -> None:
        """Commit (or roll back), then release the connection: one crossing.

        A commit runs :func:`commit_session` with ``state``: a cancellation before the
        COMMIT is sent rolls back; one while it is on the wire waits for its reply up to
        :data:`COMMIT_GRACE` seconds."""
        ...

    def commit_state(self) -> CommitState:
        """A fresh :class:`CommitState` for one commit on this session."""
        ...

    async def discard(self) -> None:
        """Forget the session without I/O (after a cancelled call or a timed-out rollback).

        A connection left mid-statement is invalidated, never reused; the server rolls
        its transaction back when the connection closes.
        """
        ...

    @property
    def lost(self) -> str:
        """Why the server closed this session under its user (it stopped), or ``""``.

        A lost session's work was rolled back: :meth:`call` and ``finish(commit=True)``
        raise :class:`~gochat_actors.DBUnavailable`; a rollback or discard is a no-op.
        """
        ...

    def release(self) -> None:
        """The user is done with this handle (no I/O). A handle that still holds a
        connection (its end did not get through) stays with its server, which closes
        that connection when the server closes."""
        ...


class DBServer(Protocol):
    """One database server: the primary or one replica."""

    name: str
    """``"primary"`` or ``"replica-<i>"``: the child id, the log field, the metric label."""

    role: ServerRole

    exclusive: trio.Lock | None
    """Set when sessions must take turns (SQLite: one connection); held for a session's life."""

    async def open(self) -> None:
        """Allocate the engine and its pool; no I/O required (a replica may be down)."""
        ...

    async def ping(self) -> None:
        """One real round trip (``SELECT 1``); raises :class:`~gochat_actors.DBError`."""
        ...

    async def probe(self) -> ReplicaStatus:
        """``SELECT 1`` and the replication status, in one crossing."""
        ...

    def session(self) -> DBSessionHandle:
        """A new session on this server (no I/O until its first call).

        Raises :class:`~gochat_actors.DBUnavailable` once :meth:`aclose` has begun.
        """
        ...

    async def aclose(self) -> None:
        """Close the server: no new sessions; the sessions in flight get part of the
        caller's deadline to end, the rest are closed under their users (rolled back,
        :attr:`DBSessionHandle.lost`); then every connection is closed."""
        ...


class DBBackend(Protocol):
    """Makes the servers of one :class:`~gochat_actors.db.DBManager`.

    Example::

        with MemoryDB() as memdb:                      # the in-memory backend
            db = DBManager(settings, backend=memdb)
    """

    def server(
        self, url: Dsn, *, name: str, role: ServerRole, pool_size: int, metrics: Metrics | None
    ) -> DBServer:
        """The server for ``url`` (not opened yet)."""
        ...


def commit_session(session: Session, state: CommitState | None) -> None:
    """Commit ``session``, noting in ``state`` when the COMMIT is sent and when it is
    done. Pending ORM changes are flushed first: an error there is not the COMMIT's.

    Example::

        commit_session(session, state)     # where I/O may happen
    """
    if state is None:
        session.commit()
        return
    session.flush()
    if not session.in_transaction():  # nothing to commit: nothing sent
        state.done = True
        return
    state.sent = True
    with state.guard():
        session.commit()
    state.done = True


def end_session(session: Session, commit: bool, state: CommitState | None = None) -> None:
    """What :meth:`DBSessionHandle.finish` does, on the side where I/O may happen:
    commit (or roll back), then close (the connection goes back to its pool).

    Example::

        await async_session.run_sync(end_session, True)
    """
    try:
        if commit:
            commit_session(session, state)
        else:
            session.rollback()
    finally:
        session.close()
