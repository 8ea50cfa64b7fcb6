"""``DBManager``: the primary, its read replicas and their probes, as supervised children.

The tree ``spec()`` returns::

    db                    a supervisor (or just the primary child, when alone)
     ├── bridge           only when no Bridge was given: the asyncio loop
     ├── primary          engine for the primary; SELECT 1 every probe_interval -> health
     ├── replica-0        engine + probe: SELECT 1, SHOW REPLICA STATUS every probe_interval,
     │                    and at once when a read has waited half an interval
     └── replica-1        ... ejected on failure / lag > max_lag, re-admitted when healthy

Reads go to an admitted replica (round robin), else to the primary; a session that
wrote makes later reads *in the same context* (task, and tasks it starts afterwards) go to
the primary for ``sticky_seconds``, and after that only to a replica that a probe has
shown to have the write (read-your-writes).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import inspect
import itertools
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, TypeVarTuple, cast

import trio

from supervisors import (
    Backoff,
    ChildSpec,
    Health,
    cleanup_scope,
    progress,
    set_health,
    supervisor_spec,
)

from .._bridge import Bridge
from .._dsn import Dsn
from .._exceptions import DBCommitUnknown, DBError, DBRetryExhausted, DBTimeout, DBUnavailable
from .._slot import Slot
from .._tracing import db_transaction_span
from ..log import get_logger
from ._classify import NO_TABLE
from ._errors import is_retryable
from ._protocol import CommitState, DBBackend, DBServer, ReplicaStatus, commit_session
from ._session import DBSession, Mode
from ._settings import DBSettings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..metrics import Metrics

__all__ = ["DBManager", "DBStatistics", "ReplicaInfo", "assess_replica"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

START_TIMEOUT = 10.0
"""Seconds the primary gets to answer its first ``SELECT 1`` when the actor starts."""

READMIT_PROBES = 3
"""Passing probes in a row that re-admit an ejected replica (doubled each time it is
ejected again soon after, up to :data:`READMIT_MAX`): no flapping."""

READMIT_MAX = 48

LAG_RESOLUTION = 1.0
"""Seconds of margin on a replica's reported lag (``Seconds_Behind_Master`` is whole
seconds) when judging whether it has a context's last write."""

RETRY_BACKOFF = Backoff(initial=0.02, maximum=1.0, multiplier=2.0, jitter=0.5)
"""Delay before ``with_transaction`` retry number n (0-based): 20 ms doubling, cap 1 s."""

_log = get_logger("gochat_actors.db")


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """One replica as the manager sees it. ``url`` has its password masked.

    Example::

        ReplicaInfo("replica-0", "mysql+aiomysql://app:***@db2/chat", True, 0.0, "lag 0s")
    """

    name: str
    url: str
    admitted: bool
    lag: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class DBStatistics:
    """A snapshot of :meth:`DBManager.statistics`.

    ``reads_on_primary`` is True when replicas are configured but none is admitted.

    Example::

        stats = db.statistics()
        healthy = [r.name for r in stats.replicas if r.admitted]
    """

    primary_running: bool
    replicas: tuple[ReplicaInfo, ...]
    reads_on_primary: bool


@dataclass(eq=False, slots=True)
class _Replica:
    name: str
    url: Dsn
    server: DBServer | None = None
    admitted: bool = False
    probed: bool = False
    lag: float | None = None
    reason: str = "not probed yet"
    warned_unknown: bool = False
    inflight: dict[trio.CancelScope, float] = field(default_factory=dict)
    """Calls waiting on this replica, each with the time it started (oldest first)."""
    probe_started: float = -math.inf
    """When the last probe started: the replica answered at or after it, if it passed."""
    passes: int = 0
    """Probes passed in a row."""
    readmit_after: int = READMIT_PROBES
    """Passes in a row that re-admit it once ejected (hysteresis)."""
    admitted_at: float = -math.inf
    ever_admitted: bool = False
    has_until: float = -math.inf
    """Every write committed on the primary before this time (trio clock) is applied
    here, as far as the last probe showed (its start, less the lag it reported)."""
    wake: trio.Event = field(default_factory=trio.Event)
    """Set when a call starts with none in flight: the probe child recomputes its wait."""

    def call_started(self, scope: trio.CancelScope) -> None:
        """A read (or its rollback) starts waiting here: ``scope`` is cancelled on ejection."""
        self.inflight[scope] = trio.current_time()
        if len(self.inflight) == 1:
            self.wake.set()

    def call_ended(self, scope: trio.CancelScope) -> None:
        self.inflight.pop(scope, None)

    def unanswered_since(self) -> float | None:
        """Since when the oldest call in flight has waited without the replica answering
        a probe (``None`` with no call in flight)."""
        for started in self.inflight.values():  # insertion order: the oldest first
            return max(started, self.probe_started)
        return None


def assess_replica(status: ReplicaStatus, max_lag: float) -> tuple[bool, str]:
    """Whether a probed replica may serve reads, and why (or why not).

    Example::

        >>> assess_replica(ReplicaStatus(True, True, True, lag=7.0), max_lag=5.0)
        (False, 'lagging 7s behind the primary (max_lag 5s)')
    """
    if not status.is_replica:
        return False, "not a replica (no replication status)"
    if not status.known:
        return True, "replication status not visible (privilege): liveness only"
    if not status.io_running:
        return False, "replication IO thread not running"
    if not status.sql_running:
        return False, "replication SQL thread not running"
    if status.lag is None:
        return False, "replication lag unknown"
    if status.lag > max_lag:
        return False, f"lagging {status.lag:g}s behind the primary (max_lag {max_lag:g}s)"
    return True, f"lag {status.lag:g}s"


class DBManager:
    """The database of a service: a primary for writes, replicas for reads (the Go
    original's DBManager), run as supervised children.

    ``bridge`` is the service's :class:`~gochat_actors.Bridge` (its child must run before
    this one: ``depends_on=("bridge",)``); without one, ``spec()`` runs a bridge of its
    own. ``backend`` replaces the SQLAlchemy engines (e.g. :class:`MemoryDB` in tests).
    ``wait`` is how long a call waits for the primary's actor to be running (during a
    restart) before :class:`~gochat_actors.DBUnavailable`.

    Example::

        db = DBManager(settings.db, bridge=bridge, metrics=metrics)
        children.append(db.spec("db", depends_on=("bridge",)))
        ...
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO rooms (name) VALUES (:n)"), {"n": "go"})
    """

    def __init__(
        self,
        settings: DBSettings,
        *,
        bridge: Bridge | None = None,
        metrics: Metrics | None = None,
        backend: DBBackend | None = None,
        wait: float = 5.0,
    ) -> None:
        if not isinstance(settings, DBSettings):
            raise TypeError(f"settings must be a DBSettings, got {type(settings).__name__}")
        if not isinstance(wait, int | float) or isinstance(wait, bool) or not wait >= 0:
            raise ValueError(f"wait must be a number of seconds >= 0, got {wait!r}")
        self._settings = settings
        self._metrics = metrics
        self._wait = float(wait)
        self._own_bridge = bridge is None and backend is None
        self._bridge = bridge if bridge is not None else Bridge()
        self._backend = backend
        self._slot: Slot[DBServer] = Slot("the database primary", error=DBUnavailable)
        self._replicas = [
            _Replica(f"replica-{i}", url) for i, url in enumerate(self._usable_replicas())
        ]
        self._admitted: list[_Replica] = []
        self._round_robin = itertools.count()
        self._reads_on_primary = False
        self._primary_ok = True
        self._probe_timeout = settings.probe_interval / 2
        self._written: contextvars.ContextVar[float] = contextvars.ContextVar(
            f"gochat_db_written_{id(self):x}", default=-math.inf
        )  # when this context last wrote (trio clock), for read-your-writes
        if metrics is not None:
            for replica in self._replicas:
                metrics.db_replica_healthy.labels(replica=replica.name).set(0)

    def _usable_replicas(self) -> list[Dsn]:
        replicas = list(self._settings.replicas)
        if self._backend is not None or not replicas:
            return replicas
        if self._settings.primary.scheme.startswith("sqlite"):
            _log.warning("db.replicas_ignored", count=len(replicas), reason="the primary is SQLite")
            return []
        sqlite = [url for url in replicas if url.scheme.startswith("sqlite")]
        if sqlite:
            _log.warning("db.replicas_ignored", count=len(sqlite), reason="SQLite replicas")
        return [url for url in replicas if not url.scheme.startswith("sqlite")]

    def __repr__(self) -> str:
        return f"<DBManager primary={self._settings.primary} replicas={len(self._replicas)}>"

    @property
    def settings(self) -> DBSettings:
        """The settings this manager was built from."""
        return self._settings

    # -- the actors ------------------------------------------------------------------
    def spec(self, id: str = "db", **spec_options: Any) -> ChildSpec:
        """The child that runs this database: the primary's actor, or a supervisor of the
        bridge (when none was given), the primary and one probe per replica.

        ``spec_options`` are :class:`~supervisors.ChildSpec` fields (``depends_on``,
        ``shutdown``, ``restart``...).

        Example::

            db.spec("db", depends_on=("bridge",))
        """
        after = ("bridge",) if self._own_bridge else ()
        children: list[ChildSpec] = []
        if self._own_bridge:
            children.append(ChildSpec("bridge", self._bridge.run))
        children.append(ChildSpec("primary", self._run_primary, depends_on=after))
        children.extend(
            ChildSpec(r.name, self._run_replica, args=(r,), depends_on=after)
            for r in self._replicas
        )
        if len(children) == 1:
            return ChildSpec(id, self._run_primary, **spec_options)
        spec = supervisor_spec(id, children)
        return dataclasses.replace(spec, **spec_options) if spec_options else spec

    def _backend_for_run(self) -> DBBackend:
        if self._backend is None:
            from ._sqlalchemy import SQLAlchemyBackend

            self._backend = SQLAlchemyBackend(self._bridge)
        return self._backend

    def _server(self, url: Dsn, name: str, role: Any) -> DBServer:
        return self._backend_for_run().server(
            url, name=name, role=role, pool_size=self._settings.pool_size, metrics=self._metrics
        )

    async def _run_primary(
        self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        server = self._server(self._settings.primary, "primary", "primary")
        try:
            await server.open()
            with trio.move_on_after(START_TIMEOUT) as scope:
                await server.ping()
            if scope.cancelled_caught:
                raise DBUnavailable(f"the primary did not answer within {START_TIMEOUT:g}s")
            self._slot.fill(server)
            _log.info(
                "db.started", primary=str(self._settings.primary), replicas=len(self._replicas)
            )
            set_health(Health.OK)
            task_status.started(self)
            while True:
                await trio.sleep(self._settings.probe_interval)
                await self._check_primary(server)
                progress()
        finally:
            self._slot.clear()
            with cleanup_scope():
                await server.aclose()

    async def _check_primary(self, server: DBServer) -> None:
        reason = ""
        with trio.move_on_after(self._probe_timeout) as scope:
            try:
                await server.ping()
            except DBError as exc:
                reason = f"primary unreachable: {exc}"
        if scope.cancelled_caught:
            reason = f"primary did not answer within {self._probe_timeout:g}s"
        ok = not reason
        if ok != self._primary_ok:
            self._primary_ok = ok
            if ok:
                _log.info("db.primary_back")
            else:
                _log.warning("db.primary_unreachable", reason=reason)
        set_health(Health.OK if ok else Health.FAILED, reason)

    async def _run_replica(
        self, replica: _Replica, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        server = self._server(replica.url, replica.name, "replica")
        try:
            await server.open()
            replica.server = server
            await self._probe(replica, server)
            task_status.started()
            interval = self._settings.probe_interval
            next_probe = trio.current_time() + interval
            while True:
                await self._probe_due(replica, next_probe)
                now = trio.current_time()
                if now >= next_probe:
                    next_probe = max(next_probe + interval, now)
                await self._probe(replica, server)
                progress()
        finally:
            self._set_admitted(replica, False, "its probe stopped", quiet=True)
            replica.server = None
            with cleanup_scope():
                await server.aclose()

    async def _probe_due(self, replica: _Replica, next_probe: float) -> None:
        """Sleep until ``next_probe``, or until a call has waited on the replica for a
        probe timeout since it last answered: then it is probed at once, so that no call
        waits on a hung replica for more than one ``probe_interval`` before it is ejected
        (and the call runs again elsewhere)."""
        while True:
            replica.wake = trio.Event()
            deadline = next_probe
            waiting = replica.unanswered_since()
            if waiting is not None:
                deadline = min(deadline, waiting + self._probe_timeout)
            if trio.current_time() >= deadline:
                return
            with trio.move_on_at(deadline):
                await replica.wake.wait()

    async def _probe(self, replica: _Replica, server: DBServer) -> None:
        replica.probe_started = trio.current_time()
        status: ReplicaStatus | None = None
        with trio.move_on_after(self._probe_timeout) as scope:
            try:
                status = await server.probe()
            except DBError as exc:
                healthy, reason = False, f"probe failed: {exc}"
        if scope.cancelled_caught:
            healthy, reason = False, f"probe did not answer within {self._probe_timeout:g}s"
        elif status is not None:
            healthy, reason = assess_replica(status, self._settings.max_lag)
            if not status.known and not replica.warned_unknown:
                replica.warned_unknown = True
                _log.warning("db.replica_status_hidden", replica=replica.name, reason=reason)
        replica.lag = status.lag if status is not None else None
        if healthy and status is not None:
            # Seconds_Behind_Master counts whole seconds: one more of margin. Without a
            # visible status, only max_lag bounds what it may miss.
            lag = status.lag if status.known and status.lag is not None else self._settings.max_lag
            has_until = replica.probe_started - lag - LAG_RESOLUTION
            replica.has_until = max(replica.has_until, has_until)  # never goes back
        replica.probed = True
        replica.passes = replica.passes + 1 if healthy else 0
        recovering = healthy and not replica.admitted and replica.ever_admitted
        if recovering and replica.passes < replica.readmit_after:  # hysteresis: not yet
            reason = (
                f"recovering: {replica.passes} of {replica.readmit_after} probes passed"
                f" in a row ({reason})"
            )
            healthy = False
        self._set_admitted(replica, healthy, reason)
        set_health(Health.OK if healthy else Health.DEGRADED, "" if healthy else reason)

    def _set_admitted(
        self, replica: _Replica, healthy: bool, reason: str, *, quiet: bool = False
    ) -> None:
        replica.reason = reason
        if healthy != replica.admitted:
            replica.admitted = healthy
            url = str(replica.url)
            now = trio.current_time()
            if healthy:
                self._admitted.append(replica)
                if replica.ever_admitted:  # a re-admission: watched for flapping
                    replica.admitted_at = now
                replica.ever_admitted = True
                _log.info("db.replica_admitted", replica=replica.name, url=url, reason=reason)
            else:
                self._admitted.remove(replica)
                replica.has_until = -math.inf  # re-admitted: its next probes tell anew
                replica.passes = 0
                # Ejected again soon after a re-admission: it flaps, make it prove more.
                # (Its own probe child stopping says nothing of the server: the next
                # incarnation's first passing probe admits it, as at start.)
                stayed = now - replica.admitted_at
                if quiet:
                    replica.ever_admitted, replica.readmit_after = False, READMIT_PROBES
                elif stayed < replica.readmit_after * self._settings.probe_interval:
                    replica.readmit_after = min(replica.readmit_after * 2, READMIT_MAX)
                else:
                    replica.readmit_after = READMIT_PROBES
                for scope in list(replica.inflight):
                    scope.cancel()  # reads in flight there fail over (see DBSession)
                log = _log.info if quiet else _log.warning
                log("db.replica_ejected", replica=replica.name, url=url, reason=reason)
            if self._metrics is not None:
                gauge = self._metrics.db_replica_healthy.labels(replica=replica.name)
                gauge.set(1 if healthy else 0)
        if not quiet:
            self._note_read_target()

    def _eject(self, replica: _Replica, reason: str) -> None:
        self._set_admitted(replica, False, reason)

    def _note_read_target(self) -> None:
        """Log once when reads fall back to the primary, once when replicas are back."""
        if not self._replicas:
            return
        if self._admitted:
            if self._reads_on_primary:
                self._reads_on_primary = False
                _log.info("db.reads_on_replicas", admitted=[r.name for r in self._admitted])
        elif not self._reads_on_primary and all(r.probed for r in self._replicas):
            self._reads_on_primary = True
            reasons = {r.name: r.reason for r in self._replicas}
            _log.warning("db.reads_on_primary", reason="no healthy replica", replicas=reasons)

    # -- routing -----------------------------------------------------------------------
    async def _primary(self) -> DBServer:
        return await self._slot.get(self._wait)

    async def _route_primary(self) -> tuple[DBServer, _Replica | None]:
        return await self._primary(), None

    async def _attach_session(
        self, session: DBSession, route: Callable[[], Awaitable[tuple[DBServer, _Replica | None]]]
    ) -> None:
        """Open ``session`` on the server ``route()`` picks. One that stopped after it was
        picked (its actor is restarting: it opens no new session) is passed over for the
        next (the next incarnation, another replica)."""
        while True:
            server, replica = await route()
            try:
                await session._attach(server, replica)
                return
            except DBUnavailable:
                current = replica.server if replica is not None else self._slot.value
                if current is server:
                    raise

    def _mark_sticky(self) -> None:
        """This context wrote (or may have): note when, for read-your-writes."""
        if self._replicas and self._settings.sticky_seconds > 0:
            self._written.set(trio.current_time())

    async def _route_read(
        self, *, consistent: bool = False, exclude: set[str] | frozenset[str] = frozenset()
    ) -> tuple[DBServer, _Replica | None]:
        if not consistent and self._admitted:
            wrote = self._written.get()
            if wrote == -math.inf:  # this context never wrote: any admitted replica
                candidates = [r for r in self._admitted if r.name not in exclude]
            elif trio.current_time() < wrote + self._settings.sticky_seconds:
                candidates = []
            else:  # read-your-writes: only a replica a probe has shown to have the write
                candidates = [
                    r for r in self._admitted if r.has_until > wrote and r.name not in exclude
                ]
            if candidates:
                replica = candidates[next(self._round_robin) % len(candidates)]
                if replica.server is not None:
                    return replica.server, replica
        return await self._primary(), None

    # -- sessions ----------------------------------------------------------------------
    def transaction(
        self, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[DBSession]:
        """One transaction on the primary: committed when the block ends, rolled back if
        it raises or is cancelled before the COMMIT is sent (shielded, bounded rollback).
        A cancellation while the COMMIT is on the wire waits for its reply (2 s at most):
        committed, the block ends normally; no reply,
        :class:`~gochat_actors.DBCommitUnknown`.

        ``timeout`` bounds the block (waiting for the primary included): past it the
        transaction is rolled back and :class:`~gochat_actors.DBTimeout` raised.

        Example::

            async with db.transaction() as session:
                await session.execute(text("UPDATE rooms SET n = n + 1 WHERE id = :id"), {"id": 7})
                session.add(Message(room_id=7, body="hi"))
        """
        return self._open(Mode.TRANSACTION, timeout=timeout)

    def writer(self, *, timeout: float | None = None) -> AbstractAsyncContextManager[DBSession]:
        """A session on the primary that commits after every call (autocommit, the
        original's ``Writer()``); pending ORM objects are committed when the block ends.

        Use :meth:`transaction` when several changes must be all-or-nothing.

        Example::

            async with db.writer() as session:
                await session.execute(text("DELETE FROM sessions WHERE expires < NOW()"))
        """
        return self._open(Mode.WRITER, timeout=timeout)

    def reader(
        self, consistent: bool = False, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[DBSession]:
        """A read session on a healthy replica, else on the primary; never commits.

        ``consistent=True`` always reads the primary; so do reads for ``sticky_seconds``
        after this context's last committed write, and then until a replica is known to
        have it. The session's first call, in flight on a replica that is ejected (or
        found unreachable), is run again elsewhere; once a call has returned, a failure
        of its replica raises :class:`~gochat_actors.DBUnavailable` (it keeps one
        server's snapshot): run the read again.

        Example::

            async with db.reader() as session:
                rooms = (await session.scalars(select(Room))).all()
        """
        return self._open(Mode.READER, consistent=consistent, timeout=timeout)

    @asynccontextmanager
    async def _open(
        self, mode: Mode, *, consistent: bool = False, timeout: float | None = None
    ) -> AsyncIterator[DBSession]:
        deadline = _deadline(timeout)
        session = DBSession(self, mode)
        span = db_transaction_span(self.settings.primary, mode.name.lower())
        with span, trio.CancelScope(deadline=deadline) as scope:
            if mode is Mode.READER:
                route = functools.partial(self._route_read, consistent=consistent)
                await self._attach_session(session, route)
            else:
                await self._attach_session(session, self._route_primary)
            try:
                yield session
            except BaseException:
                await session._release(quietly=True)
                raise
            try:
                await session._end()  # releases or drops the session itself if it raises
            finally:
                session._detach()
        if scope.cancelled_caught:  # before any COMMIT was sent (see DBSession._committed)
            raise _timed_out(mode, timeout)

    async def with_transaction(
        self,
        fn: Callable[[DBSession, *Ts], Awaitable[T]] | Callable[[Session, *Ts], T],
        *args: *Ts,
        retries: int = 3,
        timeout: float | None = None,
    ) -> T:
        """Run ``fn(session, *args)`` in a transaction and return its result (the
        original's ``WithTransaction``); retry it on deadlocks and lock-wait or
        serialization failures (1213, 1205, SQLSTATE 40001), nothing else, with backoff.

        ``fn`` is either an ``async def`` taking a :class:`DBSession` (it runs on the trio
        side: each statement one crossing) or a plain ``def`` taking a sync SQLAlchemy
        ``Session``: then the whole attempt (begin, ``fn``, commit) runs on the asyncio
        side in ONE crossing. After ``retries`` retries it raises
        :class:`~gochat_actors.DBRetryExhausted`. ``timeout`` bounds all attempts.

        Example::

            def transfer(s: Session, src: int, dst: int, amount: int) -> None:
                s.execute(debit, {"id": src, "amount": amount})
                s.execute(credit, {"id": dst, "amount": amount})

            await db.with_transaction(transfer, 1, 2, 100)          # one crossing

            async def rename(session: DBSession, room_id: int) -> None:
                room = await session.get(Room, room_id)
                room.name = "general"

            await db.with_transaction(rename, 7, retries=5)
        """
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        on_trio = _is_async(fn)
        with trio.CancelScope(deadline=_deadline(timeout)) as scope:
            attempt = 0
            while True:
                try:
                    if not on_trio:
                        return await self._run_unit(cast("Callable[..., T]", fn), args)
                    async with self._open(Mode.TRANSACTION) as session:
                        return await cast("Callable[..., Awaitable[T]]", fn)(session, *args)
                except DBError as exc:
                    if isinstance(exc, DBCommitUnknown) or not is_retryable(exc):
                        raise
                    if attempt >= retries:
                        raise DBRetryExhausted(
                            f"transaction failed {attempt + 1} times, the last: {exc}"
                        ) from exc
                    delay = RETRY_BACKOFF.delay(attempt, random.random())
                    attempt += 1
                    _log.warning(
                        "db.transaction_retry",
                        attempt=attempt,
                        retries=retries,
                        delay=delay,
                        error=str(exc),
                    )
                await trio.sleep(delay)
        assert scope.cancelled_caught  # the loop only ends by returning, raising, or this
        raise _timed_out(Mode.TRANSACTION, timeout)

    async def _run_unit(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """The whole transaction of a sync ``fn`` in one call (one crossing)."""
        session = DBSession(self, Mode.TRANSACTION)
        await self._attach_session(session, self._route_primary)
        handle = session._live()
        state = handle.commit_state()
        metrics = self._metrics
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

    # -- introspection -------------------------------------------------------------------
    def statistics(self) -> DBStatistics:
        """Where reads go now, and why.

        Example::

            if db.statistics().reads_on_primary:
                ...
        """
        return DBStatistics(
            primary_running=self._slot.value is not None,
            replicas=tuple(
                ReplicaInfo(r.name, str(r.url), r.admitted, r.lag, r.reason) for r in self._replicas
            ),
            reads_on_primary=bool(self._replicas) and not self._admitted,
        )


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


def _deadline(timeout: float | None) -> float:
    if timeout is None:
        return math.inf
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout >= 0:
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    return trio.current_time() + timeout


def _timed_out(mode: Mode, timeout: float | None) -> DBTimeout:
    what = "transaction" if mode is Mode.TRANSACTION else f"{mode.value} session"
    return DBTimeout(f"{what} timed out after {timeout:g}s; rolled back")


def _is_async(fn: object) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )
