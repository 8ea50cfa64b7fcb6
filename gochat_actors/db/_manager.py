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

import dataclasses
import functools
import inspect
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
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
from .._exceptions import DBCommitUnknown, DBError, DBRetryExhausted, DBUnavailable
from .._slot import Slot
from ..log import get_logger
from ._backends import dialect
from ._errors import is_retryable
from ._protocol import DBBackend, DBServer, ReplicaStatus
from ._router import Replica, ReplicaRouter
from ._session import DBSession, Mode, deadline_of, open_session, run_unit, timed_out
from ._settings import DBSettings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..metrics import Metrics

__all__ = ["DBManager", "DBStatistics", "ReplicaInfo", "assess_replica"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

START_TIMEOUT = 10.0
"""Seconds the primary gets to answer its first ``SELECT 1`` when the actor starts."""

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
            Replica(f"replica-{i}", url) for i, url in enumerate(self._usable_replicas())
        ]
        self._router = ReplicaRouter(
            settings, self._replicas, self._slot, wait=self._wait, metrics=metrics
        )
        self._primary_ok = True
        self._probe_timeout = settings.probe_interval / 2
        if metrics is not None:
            for replica in self._replicas:
                metrics.db_replica_healthy.labels(replica=replica.name).set(0)

    def _usable_replicas(self) -> list[Dsn]:
        """The replicas, but none when the primary's dialect has no replicas, nor those
        of such a dialect (one warning each way)."""
        replicas = list(self._settings.replicas)
        if self._backend is not None or not replicas:
            return replicas
        primary = dialect(self._settings.primary)
        if not primary.replicas:
            reason = f"the primary is {primary.name}"
            _log.warning("db.replicas_ignored", count=len(replicas), reason=reason)
            return []
        ignored = [dialect(url).name for url in replicas if not dialect(url).replicas]
        if ignored:
            reason = ", ".join(f"{name} replicas" for name in dict.fromkeys(ignored))
            _log.warning("db.replicas_ignored", count=len(ignored), reason=reason)
        return [url for url in replicas if dialect(url).replicas]

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
        self, replica: Replica, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
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
            self._router.set_admitted(replica, False, "its probe stopped", quiet=True)
            replica.server = None
            with cleanup_scope():
                await server.aclose()

    async def _probe_due(self, replica: Replica, next_probe: float) -> None:
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

    async def _probe(self, replica: Replica, server: DBServer) -> None:
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
        self._router.set_admitted(replica, healthy, reason)
        set_health(Health.OK if healthy else Health.DEGRADED, "" if healthy else reason)

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
        return open_session(self._router, Mode.TRANSACTION, timeout=timeout)

    def writer(self, *, timeout: float | None = None) -> AbstractAsyncContextManager[DBSession]:
        """A session on the primary that commits after every call (autocommit, the
        original's ``Writer()``); pending ORM objects are committed when the block ends.

        Use :meth:`transaction` when several changes must be all-or-nothing.

        Example::

            async with db.writer() as session:
                await session.execute(text("DELETE FROM sessions WHERE expires < NOW()"))
        """
        return open_session(self._router, Mode.WRITER, timeout=timeout)

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
        return open_session(self._router, Mode.READER, consistent=consistent, timeout=timeout)

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
        with trio.CancelScope(deadline=deadline_of(timeout)) as scope:
            attempt = 0
            while True:
                try:
                    if not on_trio:
                        return await run_unit(self._router, cast("Callable[..., T]", fn), args)
                    async with open_session(self._router, Mode.TRANSACTION) as session:
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
        raise timed_out(Mode.TRANSACTION, timeout)

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
            reads_on_primary=bool(self._replicas) and not self._router.admitted,
        )


def _is_async(fn: object) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )
