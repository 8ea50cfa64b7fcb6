"""The in-memory backend: a primary and replicas in SQLite memory, on the trio clock.

Each :class:`MemoryServer` is a sync SQLAlchemy engine on a private in-memory SQLite
database, run in place on the trio thread (no bridge, no thread), so it works under
``autojump_clock``. Writes committed on the primary go to a log that each replica
applies ``delay`` seconds later (statement-based replication), at its next session or
probe; the replica reports its lag like ``SHOW REPLICA STATUS`` would, counting what is
due as applied while a session holds it (as MySQL, whose sessions keep their snapshot).
A reader nested in the task's own session on a server gets :attr:`MemoryServer.snapshot_session`:
what is committed there, as another MySQL connection would see it.

Faults for tests: :meth:`MemoryServer.pause` (every call hangs, like ``kill -STOP``),
:attr:`MemoryServer.down` (calls fail: unreachable), :meth:`MemoryServer.fail_next`
(the next calls raise a given MySQL error, e.g. 1213 deadlock),
:meth:`MemoryServer.stop_replication` (the SQL thread stops; lag unknown),
:attr:`MemoryServer.latency` (each call takes that long on the trio clock).

SQLAlchemy is imported when the first server is made, not at import time.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, TypeVarTuple, overload

import trio

from .._dsn import Dsn
from .._exceptions import DBError
from .._pause import PauseSwitch
from ._errors import translate, watch_driver_errors
from ._protocol import (
    COMMIT_GRACE,
    CommitState,
    ReplicaStatus,
    ServerRole,
    commit_session,
    end_session,
)
from ._settings import DBSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.orm import Session

    from ..metrics import Metrics

__all__ = ["MemoryDB", "MemoryServer"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_READS = ("select", "pragma", "explain", "with", "savepoint", "release", "rollback")

_MESSAGES = {
    1205: "Lock wait timeout exceeded; try restarting transaction",
    1213: "Deadlock found when trying to get lock; try restarting transaction",
    2003: "Can't connect to MySQL server (in-memory server is down)",
    2013: "Lost connection to MySQL server during query",
}


class _DriverError(Exception):
    """Stands in for a driver exception: ``args == (errno, message)`` like pymysql's."""


@dataclass(frozen=True, slots=True)
class _Entry:
    time: float
    statement: str
    parameters: Any
    many: bool


@dataclass(slots=True)
class _Binlog:
    entries: list[_Entry] = field(default_factory=list)
    enabled: bool = True


class MemoryDB:
    """An in-memory primary and replicas: the :class:`~gochat_actors.db.DBBackend` for tests.

    Servers are made on demand by name (``"primary"``, ``"replica-0"``...); replicas
    replicate from this object's primary. ``replication=False`` keeps no binlog (no
    replica can be made): a primary alone, whose memory does not grow with its writes,
    as ``open_service`` runs the embedded ``sqlite+aiosqlite:///:memory:`` default.

    Its data outlives the managers that use it (a restarted DBManager finds it again), so
    closing it is its owner's job: :meth:`close`, or a ``with`` block.

    Example::

        with MemoryDB() as memdb:
            db = DBManager(memdb.settings(replicas=1, max_lag=1.0), backend=memdb)
            async with open_supervisor([db.spec()]):
                memdb.replica(0).pause()         # reads fail over to the primary
    """

    def __init__(self, *, replication: bool = True) -> None:
        self.servers: dict[str, MemoryServer] = {}
        self._binlog = _Binlog(enabled=bool(replication))

    def __enter__(self) -> MemoryDB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every server's SQLite database (their data is gone). Idempotent.

        Example::

            memdb.close()
        """
        for server in self.servers.values():
            server.close()

    def settings(self, replicas: int = 0, **overrides: Any) -> DBSettings:
        """``DBSettings`` naming a primary and ``replicas`` replicas of this object.

        Example::

            memdb.settings(replicas=2, probe_interval=0.5, sticky_seconds=1.0)
        """
        urls = [f"mysql+aiomysql://memory/replica-{i}" for i in range(replicas)]
        fields = {"primary": "mysql+aiomysql://memory/primary", "replicas": urls, **overrides}
        return DBSettings.model_validate(fields)

    def server(
        self, url: Dsn, *, name: str, role: ServerRole, pool_size: int, metrics: Metrics | None
    ) -> MemoryServer:
        """The server called ``name``, made on first use (the DBBackend method): the
        manager that asks gives it its ``metrics``."""
        server = self._get(name, role)
        server.metrics = metrics
        return server

    def _get(self, name: str, role: ServerRole) -> MemoryServer:
        server = self.servers.get(name)
        if server is None:
            if role == "replica" and not self._binlog.enabled:
                raise ValueError(f"no replica {name!r}: this MemoryDB has replication=False")
            server = self.servers[name] = MemoryServer(name, role, self._binlog)
        return server

    @property
    def primary(self) -> MemoryServer:
        """The primary (made on first use). Reaching it leaves the manager's metrics on it."""
        return self._get("primary", "primary")

    def replica(self, index: int = 0) -> MemoryServer:
        """Replica number ``index`` (made on first use)."""
        return self._get(f"replica-{index}", "replica")


class _Seconds:
    """A :class:`MemoryServer` knob in seconds: a number >= 0 (``inf``: never). NaN or a
    negative is refused when set, naming the knob, not at the next call (where trio
    would raise a bare ``ValueError``, or NaN would act as 0).

    Example::

        latency = _Seconds("Seconds each call takes.")
    """

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Seconds: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> float: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> _Seconds | float:
        if obj is None:
            return self
        value: float = obj.__dict__[self._name]
        return value

    def __set__(self, obj: object, value: float) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(f"MemoryServer.{self._name} must be a number of seconds, got {value!r}")
        if math.isnan(value) or value < 0:
            raise ValueError(f"MemoryServer.{self._name} must be a number >= 0, got {value!r}")
        obj.__dict__[self._name] = float(value)


class MemoryServer(PauseSwitch):
    """One in-memory server (a DBServer) with knobs for faults and replication.

    Example::

        server = memdb.replica(0)
        server.delay = 3.0               # replication lags 3 s behind the primary
        server.stop_replication()        # the SQL thread stops: ejected
        server.pause(); server.resume()  # like kill -STOP / kill -CONT
    """

    latency = _Seconds("Seconds each call takes (on the trio clock).")
    statement_latency = _Seconds(
        "Extra seconds each statement takes, probes not slowed: a long query."
    )
    reply_latency = _Seconds(
        "Seconds between the server applying a statement or COMMIT and its reply reaching "
        "the client: a client that gives up meanwhile leaves it applied (a COMMIT whose "
        "reply was lost)."
    )
    delay = _Seconds(
        "Replicas: seconds before a write committed on the primary is applied here "
        "(``math.inf``: replication never catches up)."
    )

    def __init__(self, name: str, role: ServerRole, binlog: _Binlog) -> None:
        self.name = name
        self.role: ServerRole = role
        self.exclusive: trio.Lock | None = trio.Lock()
        self.metrics: Metrics | None = None
        self.down = False
        """While True every call fails with "can't connect" (2003): unreachable."""
        self.latency = 0.0
        self.statement_latency = 0.0
        self.reply_latency = 0.0
        self.delay = 0.0
        self.calls = 0
        """Calls served (statements, commits, probes): for assertions."""
        self._binlog = binlog
        self._applied = 0
        self._replicating = True
        self._faults: list[tuple[int, str]] = []
        self._pending: list[_Entry] = []
        self._engine: Engine | None = None
        self._mirror: MemoryServer | None = None  # serves snapshot_session()

    def __repr__(self) -> str:
        return f"<MemoryServer {self.name}>"

    # -- knobs (pause/resume come from PauseSwitch: queries, commits, probes hang) -------
    def fail_next(
        self, code: int, times: int = 1, *, on: Literal["statement", "commit"] = "statement"
    ) -> None:
        """The next ``times`` statements (or commits) raise MySQL error ``code``
        (1213 deadlock, 1205 lock wait timeout, 2013 lost connection...).

        Example::

            memdb.primary.fail_next(1213)               # with_transaction() retries it
            memdb.primary.fail_next(2013, on="commit")  # the commit fails
        """
        self._faults.extend([(code, on)] * times)

    def stop_replication(self) -> None:
        """Stop applying the primary's writes (``STOP SLAVE SQL_THREAD``): lag unknown."""
        self._replicating = False

    def start_replication(self) -> None:
        """Apply the primary's writes again (``START SLAVE SQL_THREAD``)."""
        self._replicating = True

    def lag(self) -> float | None:
        """Seconds behind the primary (None while replication is stopped); 0 for a primary."""
        if self.role == "primary":
            return 0.0
        if not self._replicating:
            return None
        # As a MySQL replica, which applies the primary's writes while sessions are open
        # (each keeping its snapshot): what is due counts as applied, although here it is
        # applied when no session holds this server.
        entries, now = self._binlog.entries, trio.current_time()
        due = self._applied
        while due < len(entries) and entries[due].time + self.delay <= now:
            due += 1
        if due >= len(entries):
            return 0.0
        return max(0.0, now - entries[due].time)

    # -- DBServer ----------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The SQLite engine (made on first use)."""
        if self._engine is None:
            self._engine = self._make_engine()
        return self._engine

    def _make_engine(self) -> Engine:
        from sqlalchemy import create_engine, event
        from sqlalchemy.pool import StaticPool

        engine = create_engine("sqlite://", poolclass=StaticPool, hide_parameters=True)
        watch_driver_errors(engine)
        if self.role == "primary" and self._binlog.enabled:
            event.listen(engine, "after_cursor_execute", self._record)
            event.listen(engine, "commit", self._on_commit)
            event.listen(engine, "rollback", self._on_rollback)
        return engine

    async def open(self) -> None:
        await trio.lowlevel.checkpoint()  # no I/O: a replica may be down, and still open
        _ = self.engine

    async def ping(self) -> None:
        await self._gate()

    async def probe(self) -> ReplicaStatus:
        await self._gate()
        if self.role == "primary":
            return ReplicaStatus(is_replica=False, io_running=False, sql_running=False, lag=None)
        self.catch_up()
        return ReplicaStatus(
            is_replica=True, io_running=True, sql_running=self._replicating, lag=self.lag()
        )

    def session(self) -> _MemoryHandle:
        return _MemoryHandle(self)

    @property
    def snapshot_session(self) -> Callable[[], _MemoryHandle] | None:
        """A function that opens a read session on what is committed here, beside the
        session the calling task holds (a reader nested in a transaction: MySQL would use
        another connection); ``None`` without a binlog (``MemoryDB(replication=False)``,
        which then refuses a nested reader as SQLite does).

        Its session sees the committed data only (not that task's open transaction), and
        goes through this server's knobs (latency, pause, down, faults).
        """
        return self._snapshot_session if self._binlog.enabled else None

    def _snapshot_session(self) -> _MemoryHandle:
        mirror = self._mirror
        if mirror is None:
            mirror = self._mirror = MemoryServer(f"{self.name}-snapshot", "replica", self._binlog)
        mirror.metrics = self.metrics
        if not mirror.exclusive or not mirror.exclusive.locked():
            mirror._catch_up(None if self.role == "primary" else self._applied)
        return _MemoryHandle(mirror, gate=self)

    async def aclose(self) -> None:
        # A client closing: the data stays (MemoryDB.close() ends it).
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Close this server's SQLite database and its snapshot mirror's (the data is
        gone; a later use starts empty)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()  # StaticPool: closes its one connection
        mirror, self._mirror = self._mirror, None
        if mirror is not None:
            mirror.close()

    # -- internals -----------------------------------------------------------------------
    async def _reply(self, grace: _Grace | None = None) -> None:
        """The reply's way back to the client (``reply_latency``)."""
        if self.reply_latency > 0:
            await (grace.sleep if grace else trio.sleep)(self.reply_latency)

    async def _gate(self, kind: str = "probe", grace: _Grace | None = None) -> None:
        """Latency, pause and injected faults: what every call goes through first."""
        if grace is not None:  # a COMMIT on the wire
            await grace.sleep(self.latency)
            await grace.while_paused(self)
        elif self.latency > 0:
            await trio.sleep(self.latency)
            await self._while_paused()
        else:
            await trio.lowlevel.checkpoint()
            await self._while_paused()
        self.calls += 1
        if self.down:
            raise _fault(2003)
        if self._faults and self._faults[0][1] == kind:
            raise _fault(self._faults.pop(0)[0])

    def _record(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        head = statement.lstrip().split(None, 1)
        if head and head[0].lower() not in _READS:
            self._pending.append(_Entry(0.0, statement, parameters, executemany))

    def _on_commit(self, conn: Connection) -> None:
        now = trio.current_time()
        for entry in self._pending:
            self._binlog.entries.append(_Entry(now, entry.statement, entry.parameters, entry.many))
        self._pending.clear()

    def _on_rollback(self, conn: Connection) -> None:
        self._pending.clear()

    def catch_up(self) -> None:
        """Apply the primary's writes that are due (``delay`` old) now, unless replication
        is stopped or a session is using this server (it happens at the next probe or
        session anyway).

        Example::

            memdb.replica(0).catch_up()
        """
        if self.exclusive is not None and self.exclusive.locked():
            return
        self._catch_up()

    def _catch_up(self, upto: int | None = -1) -> None:
        """Apply the entries due now (``upto=-1``), all of them (None), or the first
        ``upto`` (a mirror of a replica: what that replica applied)."""
        if self.role == "primary" or not self._replicating:
            return
        entries, now = self._binlog.entries, trio.current_time()
        if upto is not None and upto >= 0:
            entries = entries[:upto]
            now = math.inf
        elif upto is None:
            now = math.inf
        if self._applied >= len(entries) or entries[self._applied].time + self.delay > now:
            return
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            while self._applied < len(entries):
                entry = entries[self._applied]
                if entry.time + self.delay > now:
                    break
                try:
                    if entry.many:
                        cursor.executemany(entry.statement, entry.parameters)
                    else:
                        cursor.execute(entry.statement, entry.parameters)
                except Exception:  # like a replication error: the SQL thread stops
                    self._replicating = False
                    break
                self._applied += 1
            raw.commit()
        finally:
            raw.close()


class _MemoryHandle:
    """A DBSessionHandle on a sync Session, run in place."""

    __slots__ = ("_counted", "_server", "_session", "_state", "_via")

    def __init__(self, server: MemoryServer, gate: MemoryServer | None = None) -> None:
        from ._tracked import TrackedSession

        self._server = server
        self._via = gate or server  # whose latency, pause and faults its calls meet
        self._session = TrackedSession(server.engine, expire_on_commit=False)
        self._counted = False
        self._state: CommitState | None = None  # the last commit_state() handed out

    @property
    def session(self) -> Session:
        return self._session

    def commit_state(self) -> CommitState:
        self._state = CommitState()
        return self._state

    async def call(self, fn: Callable[[Session, *Ts], T], *args: *Ts) -> T:
        if self._via.statement_latency > 0:
            await trio.sleep(self._via.statement_latency)
        await self._via._gate("statement")
        if not self._session.in_transaction():
            self._server._catch_up()
        self._count(True)
        state, self._state = self._state, None
        try:
            result = fn(self._session, *args)
        except _sa_error() as exc:
            raise translate(exc) from exc
        finally:
            self._count(self._session.in_transaction())
        if state is not None and state.sent:  # it committed: the reply is a COMMIT's
            await self._commit_reply(state, _Grace())
        else:
            await self._via._reply()
        return result

    async def _commit_reply(self, state: CommitState, grace: _Grace) -> None:
        """The COMMIT's reply, with its grace: ``done`` once it reached the client."""
        done, state.done = state.done, False
        await self._via._reply(grace)
        state.done = done

    async def finish(self, *, commit: bool, state: CommitState | None = None) -> None:
        try:
            if commit and state is not None:
                self._session.flush()  # an error here is not the COMMIT's
                state.sent = True
                grace = _Grace()
                await self._via._gate("commit", grace)
                commit_session(self._session, state)
                await self._commit_reply(state, grace)
            else:
                await self._via._gate("commit" if commit else "rollback")
                end_session(self._session, commit)
                await self._via._reply()
        except _sa_error() as exc:
            raise translate(exc) from exc
        finally:
            self._session.close()
            self._count(False)

    async def discard(self) -> None:
        try:
            self._session.close()
            self._count(False)
        finally:
            await trio.lowlevel.cancel_shielded_checkpoint()

    @property
    def lost(self) -> str:
        return ""  # a memory server never closes a session under its user

    def release(self) -> None:
        pass

    def _count(self, active: bool) -> None:
        gauge = self._server.metrics.db_connections_active if self._server.metrics else None
        if gauge is not None and active != self._counted:
            gauge.inc() if active else gauge.dec()
        self._counted = active


class _Grace:
    """The waits of a COMMIT on the wire: a cancellation arriving meanwhile gives them
    :data:`COMMIT_GRACE` seconds more in all, then is raised (as the bridge's
    ``cancel_grace`` does); if they end in time, the caller's cancellation lands at its
    next checkpoint instead."""

    __slots__ = ("cancelled", "deadline")

    def __init__(self) -> None:
        self.deadline = math.inf
        self.cancelled: trio.Cancelled | None = None

    async def sleep(self, seconds: float) -> None:
        end = trio.current_time() + seconds
        if self.cancelled is None:
            try:
                await trio.sleep_until(end)
                return
            except trio.Cancelled as exc:
                self._start(exc)
        with trio.CancelScope(shield=True, deadline=self.deadline):
            await trio.sleep_until(end)
        if trio.current_time() < end:
            self._give_up()

    async def while_paused(self, server: PauseSwitch) -> None:
        if self.cancelled is None:
            try:
                await server._while_paused()
                return
            except trio.Cancelled as exc:
                self._start(exc)
        with trio.CancelScope(shield=True, deadline=self.deadline):
            await server._while_paused()
        if server.paused:
            self._give_up()

    def _start(self, exc: trio.Cancelled) -> None:
        self.cancelled = exc
        self.deadline = trio.current_time() + COMMIT_GRACE

    def _give_up(self) -> NoReturn:
        assert self.cancelled is not None
        raise self.cancelled


def _fault(code: int) -> DBError:
    import sqlalchemy.exc as sa_exc

    driver = _DriverError(code, _MESSAGES.get(code, f"injected error {code}"))
    cause = sa_exc.OperationalError("(in-memory server)", None, driver)
    error = translate(cause)
    error.__cause__ = cause
    return error


@functools.cache
def _sa_error() -> type[Exception]:
    from sqlalchemy.exc import SQLAlchemyError

    return SQLAlchemyError
