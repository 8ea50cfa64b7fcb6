"""The per-child records: state, the public :class:`ChildInfo`, and the
:class:`ChildHandle` a running child sees as its ``task_status`` and ``current_child()``."""

from __future__ import annotations

import contextvars
import enum
import math
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ._events import ExitReason, HealthChanged
from ._health import Health
from ._spec import ChildSpec
from ._stopper import register_stop_scope

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = [
    "ChildCounts",
    "ChildHandle",
    "ChildInfo",
    "ChildState",
    "cleanup_scope",
    "current_child",
    "progress",
    "set_health",
]


class ChildState(enum.Enum):
    """Where a child is in its life (the transitions are in docs/supervisors.md)."""

    STARTING = "starting"  # an incarnation runs and has not called started() yet
    RUNNING = "running"  # it called started()
    STOPPING = "stopping"  # cancelled by its supervisor, within its shutdown budget
    RESTARTING = "restarting"  # waiting for its backoff, its old incarnation's end, a
    # dependency, or the earlier members of its restart wave
    STOPPED = "stopped"  # ended and not restarted (TRANSIENT after a normal return)
    TERMINATED = "terminated"  # stopped on request or at shutdown, spec kept
    FAILED = "failed"  # its start failed and it will not be retried


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One row of :meth:`Supervisor.which_children`."""

    id: str
    state: ChildState
    restarts: int
    started_at: float | None
    last_error: BaseException | None
    kind: str = "worker"
    health: Health = Health.OK
    health_reason: str = ""


@dataclass(frozen=True, slots=True)
class ChildCounts:
    """What :meth:`Supervisor.count_children` returns (OTP's ``count_children``)."""

    specs: int
    active: int
    supervisors: int
    workers: int


class MailboxStats(Protocol):
    """What introspection reads from a child's mailbox, if it has one."""

    @property
    def depth(self) -> int: ...
    @property
    def peak(self) -> int: ...
    @property
    def size(self) -> float: ...


class Child:
    """A supervisor's record of one child spec, across its incarnations (private)."""

    __slots__ = (
        "_state",
        "_watch",
        "attempt",
        "handle",
        "health",
        "health_reason",
        "incarnation",
        "last_error",
        "mailbox",
        "order",
        "path",
        "restart_at",
        "restarts",
        "spec",
        "started_at",
        "sup",
        "wave",
    )

    def __init__(self, sup: Supervisor, spec: ChildSpec, order: int, path: str) -> None:
        self.sup = sup
        self.spec = spec
        self.order = order
        self.path = path
        mailbox = spec.meta.get("mailbox")
        self.mailbox: MailboxStats | None = mailbox if hasattr(mailbox, "depth") else None
        # An actor's mailbox follows its child's state: callers fail fast once it is down.
        self._watch: Callable[[Child], None] | None = getattr(mailbox, "_watch_child", None)
        self.state = ChildState.STARTING
        self.restarts = 0
        self.attempt = 0
        self.incarnation = 0
        self.started_at: float | None = None
        self.last_error: BaseException | None = None
        self.handle: ChildHandle | None = None
        self.restart_at = math.inf
        self.wave = 0  # the restart wave it waits in (see Supervisor._launch_due)
        self.health = Health.OK
        self.health_reason = ""

    @property
    def state(self) -> ChildState:
        return self._state

    @state.setter
    def state(self, value: ChildState) -> None:
        self._state = value
        if self._watch is not None:
            self._watch(self)

    @property
    def id(self) -> str:
        return self.spec.id

    def info(self) -> ChildInfo:
        return ChildInfo(
            self.spec.id,
            self.state,
            self.restarts,
            self.started_at,
            self.last_error,
            self.spec.kind,
            self.health,
            self.health_reason,
        )


class ChildHandle:
    """One incarnation of a child, as the child sees it.

    It is the ``task_status`` passed to the target (call :meth:`started` when ready) and
    what :func:`current_child` returns inside it: report progress for the watchdog, set
    health, and open bounded cleanup scopes.

    Example::

        async def worker(*, task_status=trio.TASK_STATUS_IGNORED):
            me = supervisors.current_child()
            task_status.started()
            while True:
                await do_one_unit()
                me.progress()
    """

    __slots__ = (
        "_abandoned",
        "_done",
        "_exit_exc",
        "_exit_reason",
        "_finished",
        "_idle",
        "_injected",
        "_injected_reason",
        "_ready",
        "_started",
        "_value",
        "after_stop",
        "child",
        "claimed",
        "incarnation",
        "last_progress",
        "manual",
        "overstay_reported",
        "scope",
        "start_deadline",
        "stop_deadline",
        "stopping",
        "subtree",
        "task",
    )

    def __init__(self, child: Child) -> None:
        self.child = child
        self.incarnation = child.incarnation
        self.scope = trio.CancelScope(shield=True)
        self.task: trio.lowlevel.Task | None = None
        self.stopping = False
        self.stop_deadline = math.inf
        self.last_progress = 0.0
        self.subtree: Supervisor | None = None
        self._ready = trio.Event()
        self._done: trio.Event | None = None
        self._started = False
        self._finished = False
        self._value: Any = None
        self._exit_exc: BaseException | None = None
        self._injected: BaseException | None = None
        self._injected_reason = ExitReason.KILLED
        self._abandoned = 0
        self._exit_reason = ExitReason.NORMAL
        self._idle = 0
        self.start_deadline = math.inf
        self.manual = False  # a caller waits for its start (and reports its failure)
        self.claimed = False  # its exit has been reported/handled
        self.after_stop: ChildState | None = None  # set when it stopped itself
        self.overstay_reported = False

    @property
    def id(self) -> str:
        """The child's id."""
        return self.child.spec.id

    @property
    def path(self) -> str:
        """The child's path from the root of its tree."""
        return self.child.path

    @property
    def finished(self) -> bool:
        """True once this incarnation's task has ended."""
        return self._finished

    @property
    def supervisor(self) -> Supervisor:
        """The supervisor running this child."""
        return self.child.sup

    def started(self, value: Any = None) -> None:
        """Tell the supervisor this child is ready; ``value`` goes to whoever started it."""
        if self._started:
            raise RuntimeError(f"child {self.path!r} called task_status.started() twice")
        if (
            self._finished
            or self._ready.is_set()
            or self.stopping
            or trio.current_time() >= self.start_deadline
        ):
            return  # the supervisor already gave up on this start (or is about to)
        self._started = True
        self._value = value
        self.last_progress = trio.current_time()
        self._ready.set()
        self.child.sup._on_ready(self)

    def progress(self) -> None:
        """Report progress to the stall watchdog (cheap; call it once per unit of work)."""
        self.last_progress = trio.current_time()

    @contextmanager
    def idle(self) -> Iterator[None]:
        """Mark a wait for work (an empty inbox): the stall watchdog does not count the
        time spent in it, and leaving it counts as progress.

        Example::

            me = supervisors.current_child()
            while True:
                with me.idle():
                    job = await inbox.receive()
                await handle(job)   # must make progress within stall_timeout
        """
        self._idle += 1
        try:
            yield
        finally:
            self._idle -= 1
            self.last_progress = trio.current_time()

    def set_health(self, status: Health, reason: str = "") -> None:
        """Report this child's health; a change becomes a :class:`HealthChanged` event."""
        child = self.child
        if not isinstance(status, Health):
            raise TypeError(f"status must be a supervisors.Health, got {status!r}")
        if child.handle is not self or (child.health is status and child.health_reason == reason):
            return
        child.health = status
        child.health_reason = reason
        sup = child.sup
        sup._publish(
            HealthChanged(
                supervisor=sup.path,
                time=trio.current_time(),
                child=child.spec.id,
                status=status,
                reason=reason,
            )
        )

    def cleanup_scope(self, timeout: float | None = None) -> trio.CancelScope:
        """A shielded scope for cleanup that ends at this child's shutdown deadline.

        While the child is being stopped the deadline is the end of its ``shutdown``
        budget; otherwise (cleanup after a crash) it is ``shutdown`` seconds from now.
        ``timeout`` can only make it shorter.
        """
        now = trio.current_time()
        deadline = self.stop_deadline if self.stopping else now + self.child.spec.shutdown
        if timeout is not None:
            deadline = min(deadline, now + timeout)
        scope = trio.CancelScope(shield=True, deadline=deadline)
        register_stop_scope(scope)
        return scope

    async def wait_finished(self) -> None:
        """Wait until this incarnation's task has ended."""
        if self._finished:
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    def _finish(self, exc: BaseException | None) -> None:
        self._finished = True
        self._exit_exc = exc
        self._ready.set()
        if self._done is not None:
            self._done.set()

    def inject(self, exc: BaseException, reason: ExitReason = ExitReason.KILLED) -> bool:
        """Make this incarnation die of ``exc`` (cancel it; the supervisor sees ``exc``)."""
        if self._finished or self.stopping or self._injected is not None:
            return False
        self._injected = exc
        self._injected_reason = reason
        self.scope.cancel()
        return True

    def stack(self) -> tuple[str, ...]:
        """Where the child's task is right now, as formatted traceback lines."""
        if self.task is None or self._finished:
            return ()
        summary = traceback.StackSummary.extract(self.task.iter_await_frames())
        return tuple(summary.format())


_current_child: contextvars.ContextVar[ChildHandle | None] = contextvars.ContextVar(
    "supervisors_current_child", default=None
)


def current_child() -> ChildHandle:
    """The :class:`ChildHandle` of the supervised child running this code.

    Raises ``RuntimeError`` outside a supervised child.

    Example::

        me = supervisors.current_child()
        me.set_health(Health.DEGRADED, "replica lagging")
    """
    handle = _current_child.get()
    if handle is None:
        raise RuntimeError("not running inside a supervised child")
    return handle


def progress() -> None:
    """Report progress for the current child's stall watchdog (no-op outside a child).

    Example::

        while True:
            batch = await receive()
            supervisors.progress()
    """
    handle = _current_child.get()
    if handle is not None:
        handle.last_progress = trio.current_time()


def set_health(status: Health, reason: str = "") -> None:
    """Report the current child's health (see :meth:`ChildHandle.set_health`); a no-op
    outside a supervised child (code also run from a plain nursery), like :func:`progress`.

    Example::

        supervisors.set_health(Health.DEGRADED, "no healthy replica; reading the primary")
    """
    handle = _current_child.get()
    if handle is not None:
        handle.set_health(status, reason)


def cleanup_scope(timeout: float | None = None) -> trio.CancelScope:
    """A shielded cancel scope bounded by the current child's shutdown budget.

    Outside a supervised child it is bounded by ``timeout`` (default 5 seconds).

    Example::

        try:
            await serve()
        finally:
            with supervisors.cleanup_scope():
                await conn.aclose()
    """
    handle = _current_child.get()
    if handle is None:
        return trio.CancelScope(
            shield=True, deadline=trio.current_time() + (5.0 if timeout is None else timeout)
        )
    return handle.cleanup_scope(timeout)
