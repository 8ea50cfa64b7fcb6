"""The supervisor: starts children in readiness order, restarts them by strategy,
gives up past its restart intensity, and stops them in reverse order within budgets.

How it is built (the guarantees themselves are stated in docs/supervisors.md):

* One task, the *loop* (:meth:`Supervisor._serve`), handles every exit of a ready
  child, the exits of one instant in start order, and launches each restart when it
  is due. It never waits for a child to get ready: a start is spawned, and readiness
  arrives as the child's own call to ``task_status.started()`` (:meth:`_on_ready`).
* ``_lock`` serialises what stops children and decides their next state: handling one
  failure (stopping its victims), ``terminate_child``, the stop half of
  ``restart_child``, and the final stop of everything. Every wait under it is bounded
  by shutdown budgets; no wait for readiness ever happens under it.
* A restart *wave* is the set of children one failure restarts; its members start one
  at a time in start order, each once the one before is ready (and once what it
  ``depends_on`` runs). Waves of unrelated failures start independently.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._backoff import Backoff, jitter_draw
from ._child import Child, ChildCounts, ChildHandle, ChildInfo, ChildState, _current_child
from ._events import (
    ChildExited,
    ChildOverstayed,
    ChildRestarting,
    ChildStarted,
    ChildStartFailed,
    Escalating,
    Event,
    EventBus,
    EventStream,
    ExitReason,
    Overstay,
    ShutdownReport,
    SupervisorStarted,
    SupervisorStopped,
)
from ._exceptions import (
    ChildNotFound,
    ChildStartError,
    RestartIntensityExceeded,
    Stalled,
    SupervisorError,
    SupervisorNotRunning,
)
from ._health import Health, HealthReport
from ._registry import Registry, _current_registry
from ._spec import ChildSpec, Restart, Strategy, order_specs, takes_task_status
from ._timer import StartTimer

__all__ = ["DEFAULT_BACKOFF", "Supervisor", "open_supervisor", "supervisor_spec"]

_log = logging.getLogger("supervisors")

DEFAULT_BACKOFF = Backoff()
"""The backoff a :class:`Supervisor` uses unless given another (``None``: none at all)."""

_LIVE = (ChildState.STARTING, ChildState.RUNNING)
_SETTLE_PASSES = 8  # at most this many scheduling passes to let one instant's exits arrive
_QUIET_PASSES = 2  # ... and stop after this many passes with no new exit

_Exit = tuple[Child, ChildHandle, ExitReason, BaseException | None]


class _StartFailed(Exception):
    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc


class _Preempted(Exception):
    """A start some caller waited for was stopped by someone else (a shutdown, a sibling's
    failure, ``terminate_child``) before it got ready."""


class _Escalation(Exception):
    def __init__(self, child: Child, exc: BaseException | None) -> None:
        super().__init__(child.path)
        self.child = child
        self.exc = exc


@asynccontextmanager
async def _collapsing() -> AsyncIterator[None]:
    """Re-raise a group holding one real exception (besides ``Cancelled``) as that one."""
    real: BaseException | None = None
    try:
        yield
    except BaseExceptionGroup as group:
        real = collapse(group)
        if real is group:
            raise
    if real is not None:
        raise real from real.__cause__  # keep its cause; hide the group as context


def collapse(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one real exception inside ``group`` (ignoring ``Cancelled``), else ``group``."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        elif not isinstance(exc, trio.Cancelled):
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group


def _failure(raised: BaseException) -> Exception | None:
    """What a child died of, if it is a failure (an ``Exception``); ``None`` for what must
    pass through (``Cancelled``, ``KeyboardInterrupt``, ...).

    A child's own nursery that fails while it is being cancelled raises a group of its
    error and ``Cancelled``: the error is the failure, the ``Cancelled`` is the stop's.
    """
    if isinstance(raised, Exception):
        return raised
    if isinstance(raised, BaseExceptionGroup):
        rest: BaseException | None = raised.split(trio.Cancelled)[1]
        if isinstance(rest, Exception):  # only Exceptions left besides the stop's Cancelled
            return rest
    return None


def _by_order(child: Child) -> int:
    return child.order


def _manual_start(child: Child) -> bool:
    """Whether a caller (start_child, restart_child) waits for this child's start."""
    handle = child.handle
    return handle is not None and handle.manual and not handle._started and not handle._finished


class Supervisor:
    """Runs children, restarts them by ``strategy``, and stops them in reverse order.

    A supervisor is itself a child: ``ChildSpec("db", Supervisor([...]).run)`` nests
    one tree in another, to any depth; a supervisor that gives up raises
    :class:`RestartIntensityExceeded`, which its parent treats as that child's failure.

    Options: ``strategy``; ``max_restarts`` restarts allowed within ``max_seconds``
    (sliding window, monotonic clock; more -> stop everything and raise); ``backoff``
    between restarts (default :data:`DEFAULT_BACKOFF`, ``Backoff()``; ``None``: restart
    at once); ``seed`` makes backoff jitter reproducible (a nested supervisor without
    one uses its parent's); ``name`` is shown by introspection; ``event_buffer`` is
    the default ``buffer`` of :meth:`events`; ``on_event`` is subscribed before
    anything starts (see :meth:`subscribe`).

    Example::

        sup = Supervisor([ChildSpec("a", worker)], strategy=Strategy.ONE_FOR_ALL)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
    """

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        backoff: Backoff | None = DEFAULT_BACKOFF,
        name: str = "",
        seed: int | None = None,
        event_buffer: int = 1000,
        on_event: Callable[[Event], Any] | None = None,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise TypeError(f"strategy must be a supervisors.Strategy, got {strategy!r}")
        if not isinstance(max_restarts, int) or isinstance(max_restarts, bool):
            raise TypeError(f"max_restarts must be an int, got {max_restarts!r}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts!r}")
        if not isinstance(max_seconds, int | float) or isinstance(max_seconds, bool):
            raise TypeError(f"max_seconds must be a number, got {max_seconds!r}")
        if not math.isfinite(max_seconds) or max_seconds <= 0:
            raise ValueError(f"max_seconds must be a finite number > 0, got {max_seconds!r}")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be a supervisors.Backoff or None, got {backoff!r}")
        if not isinstance(event_buffer, int) or isinstance(event_buffer, bool):
            raise TypeError(f"event_buffer must be an int, got {event_buffer!r}")
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = float(max_seconds)
        self.backoff = backoff
        self.name = name
        self.seed = seed
        self._event_buffer = event_buffer
        self._specs = order_specs(children)
        self._bus = EventBus()
        if on_event is not None:
            self._bus.subscribe(on_event)
        self._registry = Registry()
        self._running = False
        self._stopped = trio.Event()
        self._report: ShutdownReport | None = None
        self._reset()

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        self.path = ""
        self._children: dict[str, Child] = {}
        self._dependents: dict[str, list[str]] = {}
        self._order = 0
        self._restart_times: deque[float] = deque()
        self._exits: list[_Exit] = []
        self._waiting: set[Child] = set()  # in a restart wave, not yet ready
        self._waves = 0
        self._wakeup = trio.Event()
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._shutdown_requested = False
        self._accepting = False
        self._closing = False
        self._overstays: list[tuple[ChildHandle, float, float, float, tuple[str, ...]]] = []
        self._watchdog_scope: trio.CancelScope | None = None
        self._start_timer = StartTimer()
        self._watchdog_wakeup = trio.Event()
        self._stall_children: set[Child] = set()
        self._parent: ChildHandle | None = None
        self._started_at = 0.0
        self._seed = self.seed

    @property
    def running(self) -> bool:
        """True from the start of :meth:`run` until it has stopped every child."""
        return self._running

    @property
    def parent(self) -> ChildHandle | None:
        """The child this supervisor runs as, when it is nested in another tree; ``None``
        for a root, or when not running. ``parent.supervisor`` is the supervisor above.

        Example::

            sup = supervisors.current_child().supervisor
            while sup.parent is not None:
                sup = sup.parent.supervisor   # up to the root of the tree
        """
        return self._parent if self._running else None

    @property
    def _label(self) -> str:
        return self.name or self.path or "<root>"

    def _publish(self, event: Event) -> None:
        self._bus.publish(event)

    def _child_path(self, child_id: str) -> str:
        return f"{self.path}/{child_id}" if self.path else child_id

    def _add(self, spec: ChildSpec) -> Child:
        child = Child(self, spec, self._order, self._child_path(spec.id))
        self._order += 1
        self._children[spec.id] = child
        for dep in spec.depends_on:
            self._dependents.setdefault(dep, []).append(spec.id)
        self._registry.add(child)
        return child

    def _remove(self, child: Child) -> None:
        if self._children.get(child.id) is child:
            del self._children[child.id]
        for dep in child.spec.depends_on:
            dependents = self._dependents.get(dep)
            if dependents and child.id in dependents:
                dependents.remove(child.id)
        self._stall_children.discard(child)
        self._waiting.discard(child)
        self._registry.remove(child)

    def _new_wave(self) -> int:
        self._waves += 1
        return self._waves

    # -------------------------------------------------------------- lifecycle

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the children in order, call ``task_status.started(self)``, supervise them
        until shut down or cancelled, then stop them in reverse order.

        Raises :class:`ChildStartError` if an initial child fails to start and
        :class:`RestartIntensityExceeded` when it gives up.
        """
        if self._running:
            raise RuntimeError(f"supervisor {self._label!r} is already running")
        self._reset()
        self._running = True
        self._stopped = trio.Event()
        self._report = None
        parent = _current_child.get()
        if (
            parent is not None
            and parent.subtree is None
            and parent.task is trio.lowlevel.current_task()
        ):
            parent.subtree = self
            self._parent = parent
            self.path = parent.path
            above = parent.child.sup
            self._registry = above._registry
            self._bus.parent = above._bus
            if self._seed is None:
                self._seed = above._seed
        else:
            self._registry = Registry()
            self._bus.parent = None
            _current_registry.set(self._registry)
        self._started_at = trio.current_time()
        error: BaseException | None = None
        outcome = "shutdown"
        try:
            async with _collapsing(), trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await self._start_initial()
                    self._accepting = not self._shutdown_requested
                    self._publish(
                        SupervisorStarted(
                            supervisor=self.path,
                            time=trio.current_time(),
                            children=len(self._children),
                        )
                    )
                    task_status.started(self)
                    await self._serve()
                except _Escalation as esc:
                    outcome = "escalated"
                    error = self._escalate(esc)
                except ChildStartError as exc:
                    outcome = "start failed"
                    error = exc
                except BaseException:
                    stopped_by_parent = self._parent is not None and self._parent.stopping
                    outcome = "shutdown" if stopped_by_parent else "cancelled"
                    raise
                finally:
                    self._accepting = False
                    with trio.CancelScope(shield=True):
                        async with self._lock:
                            await self._stop_all()
                    if self._watchdog_scope is not None:
                        self._watchdog_scope.cancel()
                    self._start_timer.cancel()
        finally:
            self._finish(outcome)
        if error is not None:
            raise error

    def _escalate(self, esc: _Escalation) -> RestartIntensityExceeded:
        child = esc.child
        self._publish(
            Escalating(
                supervisor=self.path,
                time=trio.current_time(),
                child=child.id,
                exception=esc.exc,
                restarts=self.max_restarts,
                window=self.max_seconds,
            )
        )
        error = RestartIntensityExceeded(self.path, child.path, self.max_restarts, self.max_seconds)
        error.__cause__ = esc.exc
        return error

    def _finish(self, outcome: str) -> None:
        now = trio.current_time()
        overstayed = tuple(
            Overstay(
                path=handle.path,
                budget=budget,
                overstayed_by=max(0.0, finished_at - deadline),
                stack=stack,
            )
            for handle, budget, deadline, finished_at, stack in self._overstays
        )
        self._report = ShutdownReport(
            supervisor=self.path,
            time=now,
            duration=now - self._started_at,
            overstayed=overstayed,
        )
        self._publish(self._report)
        self._publish(SupervisorStopped(supervisor=self.path, time=now, reason=outcome))
        for child in list(self._children.values()):
            self._registry.remove(child)
        if self._parent is not None:
            self._parent.subtree = None
        self._bus.close_streams()  # this supervisor's own streams, nested or not
        self._running = False
        self._nursery = None
        self._stopped.set()

    async def _start_initial(self) -> None:
        for spec in self._specs:
            self._add(spec)
        for child in list(self._children.values()):
            handle = self._spawn(child, manual=True)
            try:
                await self._await_start(child, handle)
            except _StartFailed as failed:
                child.state = ChildState.FAILED
                raise ChildStartError(
                    child.path,
                    f"child {child.path!r} failed to start: {_describe(failed.exc)}",
                ) from failed.exc
            except _Preempted:
                raise ChildStartError(
                    child.path, f"child {child.path!r} was stopped before it was ready"
                ) from None

    # --------------------------------------------------------- starting one

    def _spawn(self, child: Child, *, manual: bool) -> ChildHandle:
        """Start one incarnation (it is ready when it calls ``started()``).

        ``manual``: a caller waits for this start and handles its failure
        (:meth:`_await_start`); otherwise the loop does.
        """
        if self._nursery is None or self._closing:
            raise SupervisorNotRunning(f"supervisor {self._label!r} is not running")
        child.incarnation += 1
        handle = ChildHandle(child)
        handle.manual = manual
        timeout = child.spec.start_timeout
        handle.start_deadline = math.inf if timeout is None else trio.current_time() + timeout
        child.handle = handle
        child.state = ChildState.STARTING
        child.health = Health.OK
        child.health_reason = ""
        self._nursery.start_soon(self._child_main, child, handle, name=child.path)
        if manual:
            self._start_timer.watch(handle, self._nursery)
        return handle

    async def _await_start(self, child: Child, handle: ChildHandle, *, forget: bool = False) -> Any:
        """Wait for a start a caller drives; return what the child gave to ``started()``.

        Raises :class:`_StartFailed` (the child is stopped) if it raised, returned or timed
        out before it was ready, :class:`_Preempted` if someone else stopped it first.
        If the caller is cancelled, the start is stopped too, and the child is then
        ``TERMINATED`` (or, with ``forget``, removed: a spec ``start_child`` added).
        """
        try:
            await handle._ready.wait()  # set by started(), the end of the task, or the timer
        except BaseException:
            with trio.CancelScope(shield=True):
                if child.handle is handle and not handle.stopping:
                    await self._stop_child(child)
                    child.state = ChildState.TERMINATED  # the caller gave up on it
                    if forget:
                        self._remove(child)
            raise
        if handle._started:
            return handle._value
        if handle.stopping:
            raise _Preempted
        if not handle.finished:
            with trio.CancelScope(shield=True):
                await self._stop_child(child)
            timeout = child.spec.start_timeout
            exc: BaseException = TimeoutError(
                f"child {child.path!r} did not become ready within {timeout:g}s"
            )
        else:
            exc = handle._exit_exc or _returned_early(child)
        handle.claimed = True
        child.last_error = exc
        self._publish_start_failed(child, exc)
        raise _StartFailed(exc)

    def _on_ready(self, handle: ChildHandle) -> None:
        """The child called ``task_status.started()``: it runs from now on."""
        child = handle.child
        if child.handle is not handle or child.state is not ChildState.STARTING:
            return
        now = trio.current_time()
        child.state = ChildState.RUNNING
        child.started_at = now
        self._waiting.discard(child)
        if child.spec.stall_timeout is not None:
            self._arm_watchdog(child)
        self._publish(
            ChildStarted(
                supervisor=self.path, time=now, child=child.id, incarnation=child.incarnation
            )
        )
        if self._waiting:
            self._wakeup.set()  # the next member of its wave, or a dependent, may start now

    def _publish_start_failed(self, child: Child, exc: BaseException) -> None:
        self._publish(
            ChildStartFailed(
                supervisor=self.path, time=trio.current_time(), child=child.id, exception=exc
            )
        )

    async def _child_main(self, child: Child, handle: ChildHandle) -> None:
        _current_child.set(handle)
        if _current_registry.get() is not self._registry:  # whoever started it, it lives
            _current_registry.set(self._registry)  # in this tree (no copy when inherited)
        handle.task = trio.lowlevel.current_task()
        spec = child.spec
        reason = ExitReason.NORMAL
        exc: BaseException | None = None
        try:
            with handle.scope:
                try:
                    if takes_task_status(spec.target):
                        await spec.target(*spec.args, task_status=handle)
                    else:
                        handle.started()
                        await spec.target(*spec.args)
                except Exception as raised:
                    exc = raised
                    reason = ExitReason.EXCEPTION
                except BaseExceptionGroup as raised:
                    failure = _failure(raised)
                    if failure is None:
                        raise
                    exc = failure
                    reason = ExitReason.EXCEPTION
        finally:
            if handle._injected is not None:
                exc = handle._injected
                reason = handle._injected_reason
            elif handle.stopping:
                reason = ExitReason.SHUTDOWN
            if not handle._started:
                reason = ExitReason.START_FAILED
            handle._exit_reason = reason
            handle._finish(exc)
        self._on_exit(child, handle, reason, exc)

    def _on_exit(
        self, child: Child, handle: ChildHandle, reason: ExitReason, exc: BaseException | None
    ) -> None:
        if handle.stopping:
            self._publish_exit(child, handle, ExitReason.SHUTDOWN, exc, will_restart=False)
            if handle.after_stop is not None and child.handle is handle and not self._closing:
                self._after_self_stop(child, handle.after_stop)
        elif handle.manual and not handle._started:
            pass  # the caller waiting for this start reports it (also while stopping)
        elif self._closing:
            handle.claimed = True
            self._report_unhandled(child, handle, reason, exc)
        else:
            self._exits.append((child, handle, reason, exc))
        self._wakeup.set()  # a restart may have been waiting for this incarnation to end

    def _publish_exit(
        self,
        child: Child,
        handle: ChildHandle,
        reason: ExitReason,
        exc: BaseException | None,
        *,
        will_restart: bool,
    ) -> None:
        if not self._bus.listened:
            return
        self._publish(
            ChildExited(
                supervisor=self.path,
                time=trio.current_time(),
                child=child.id,
                reason=reason,
                exception=exc,
                incarnation=handle.incarnation,
                will_restart=will_restart,
            )
        )

    def _report_unhandled(
        self, child: Child, handle: ChildHandle, reason: ExitReason, exc: BaseException | None
    ) -> None:
        """Report an exit that will not be handled (the supervisor is stopping, or the
        child was terminated meanwhile): it is not restarted."""
        if reason is ExitReason.START_FAILED:
            failure = exc or _returned_early(child)
            child.last_error = failure
            self._publish_start_failed(child, failure)
        else:
            if exc is not None:
                child.last_error = exc
            self._publish_exit(child, handle, reason, exc, will_restart=False)

    # --------------------------------------------------------- stopping one

    async def _stop_child(self, child: Child) -> None:
        """Cancel the child and wait for it up to its budget (shielding is the caller's).

        Stopping a child already being stopped waits for the same deadline, and an
        overstay is reported once per incarnation.
        """
        handle = child.handle
        self._waiting.discard(child)
        self._stall_children.discard(child)
        if handle is None or handle._finished:
            return
        if not handle.stopping:
            self._begin_stop(child, handle)
        budget = child.spec.shutdown
        with trio.move_on_at(handle.stop_deadline):
            await handle.wait_finished()
        if (handle.finished and not handle._abandoned) or handle.overstay_reported:
            return
        handle.overstay_reported = True
        stack = handle.stack()
        self._publish(
            ChildOverstayed(
                supervisor=self.path,
                time=trio.current_time(),
                child=child.id,
                budget=budget,
                stack=stack,
            )
        )
        if self._nursery is not None:
            self._nursery.start_soon(
                self._note_overstay, handle, budget, handle.stop_deadline, stack
            )

    def _begin_stop(self, child: Child, handle: ChildHandle) -> None:
        handle.stopping = True
        handle.stop_deadline = trio.current_time() + child.spec.shutdown
        child.state = ChildState.STOPPING
        self._waiting.discard(child)
        self._stall_children.discard(child)
        handle.scope.cancel()

    def _stop_self(self, child: Child, after: ChildState) -> None:
        """A child asked to terminate or restart itself (or the subtree it runs in): stop
        it without waiting (it cannot wait for its own end); ``_on_exit`` then sets
        ``after``."""
        handle = child.handle
        if handle is None or handle._finished:
            return
        handle.after_stop = after
        if not handle.stopping:
            self._begin_stop(child, handle)

    def _after_self_stop(self, child: Child, after: ChildState) -> None:
        if after is ChildState.TERMINATED:
            child.state = ChildState.TERMINATED
            child.restart_at = math.inf
        else:
            child.restarts += 1  # a manual restart: counted per child, not for intensity
            now = trio.current_time()
            self._schedule(
                child, now, 0.0, child.attempt, child.path, self._new_wave(), count=False
            )

    async def _note_overstay(
        self, handle: ChildHandle, budget: float, deadline: float, stack: tuple[str, ...]
    ) -> None:
        with trio.CancelScope(shield=True):
            await handle.wait_finished()
        self._overstays.append((handle, budget, deadline, trio.current_time(), stack))

    def _claim(self, child: Child) -> None:
        """Take the queued exit of ``child``'s incarnation, if it died and nobody handled
        it yet: it is reported now and will not be handled on its own."""
        handle = child.handle
        if handle is None or not handle._finished or handle.stopping or handle.claimed:
            return
        if handle.manual and not handle._started:
            return  # a failed start its caller reports
        handle.claimed = True
        if handle._exit_reason is ExitReason.START_FAILED:
            self._report_unhandled(child, handle, handle._exit_reason, handle._exit_exc)
            return
        if handle._exit_exc is not None:
            child.last_error = handle._exit_exc
        will_restart = child.spec.restart is not Restart.TEMPORARY
        self._publish_exit(
            child, handle, handle._exit_reason, handle._exit_exc, will_restart=will_restart
        )

    async def _stop_all(self) -> None:
        self._closing = True
        self._accepting = False
        pending = sorted(self._exits, key=lambda e: e[0].order)
        self._exits.clear()
        for child, handle, reason, exc in pending:
            if handle.claimed or handle.stopping or child.handle is not handle:
                continue
            handle.claimed = True
            self._report_unhandled(child, handle, reason, exc)
        for child in reversed(list(self._children.values())):
            if child.handle is not None and not child.handle._finished:
                await self._stop_child(child)
            if child.state not in (ChildState.FAILED, ChildState.STOPPED):
                child.state = ChildState.TERMINATED
        self._waiting.clear()

    # ------------------------------------------------------------ the loop

    async def _serve(self) -> None:
        while not self._asked_to_stop():
            if self._exits:
                await self._settle()
            async with self._lock:
                if self._asked_to_stop():
                    break
                await self._process()
                deadline = self._next_deadline()
            if self._exits or self._asked_to_stop():
                continue
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
            self._wakeup = trio.Event()

    def _asked_to_stop(self) -> bool:
        return self._shutdown_requested  # (a call: it changes across awaits)

    async def _settle(self) -> None:
        """Let the exits of this instant arrive before handling any, so that they are
        handled in start order whatever order trio happened to run their tasks in (the
        same seed, the same outcome). Under a real clock time moves on at once."""
        now = trio.current_time()
        count = len(self._exits)
        quiet = 0
        for _ in range(_SETTLE_PASSES):
            await trio.lowlevel.checkpoint()
            if trio.current_time() != now:
                return
            if len(self._exits) != count:
                count = len(self._exits)
                quiet = 0
            else:
                quiet += 1
                if quiet >= _QUIET_PASSES:
                    return

    async def _process(self) -> None:
        """Handle the queued exits (start order), expired starts, and due restarts."""
        if self._exits:
            batch = sorted(self._exits, key=lambda e: e[0].order)
            self._exits.clear()
            for index, (child, handle, reason, exc) in enumerate(batch):
                if self._shutdown_requested:
                    self._exits[:0] = batch[index:]  # reported by the shutdown
                    return
                try:
                    await self._handle_exit(child, handle, reason, exc)
                except _Escalation:
                    self._exits[:0] = batch[index + 1 :]
                    raise
        if not self._shutdown_requested:
            await self._expire_starts()
        if not self._shutdown_requested:
            self._launch_due()

    def _next_deadline(self) -> float:
        now = trio.current_time()
        deadline = math.inf
        for child in self._waiting:
            if child.state is ChildState.RESTARTING and child.restart_at > now:
                deadline = min(deadline, child.restart_at)
            elif child.state is ChildState.STARTING and child.handle is not None:
                deadline = min(deadline, child.handle.start_deadline)
        return deadline

    def _launch_due(self) -> None:
        """Start each restart that is due: the first member of its wave not yet ready,
        once its old incarnation has ended and what it depends on runs."""
        now = trio.current_time()
        seen: set[int] = set()
        for child in sorted(self._waiting, key=_by_order):
            if child.state not in (ChildState.RESTARTING, ChildState.STARTING):
                self._waiting.discard(child)  # taken over meanwhile (e.g. a failed restart_child)
                continue
            if child.wave in seen:
                continue  # an earlier member of its wave is not ready yet
            seen.add(child.wave)
            if child.state is not ChildState.RESTARTING or child.restart_at > now:
                continue
            if child.handle is not None and not child.handle._finished:
                continue  # the old incarnation is still ending (it overstayed)
            if self._blocking_dependency(child) is not None:
                continue
            self._spawn(child, manual=False)

    async def _expire_starts(self) -> None:
        now = trio.current_time()
        for child in sorted(self._waiting, key=_by_order):
            handle = child.handle
            if (
                child.state is not ChildState.STARTING
                or handle is None
                or handle._started
                or handle.stopping
                or handle._finished
                or handle.start_deadline > now
            ):
                continue
            with trio.CancelScope(shield=True):
                await self._stop_child(child)
            handle.claimed = True
            timeout = child.spec.start_timeout
            exc = TimeoutError(f"child {child.path!r} did not become ready within {timeout:g}s")
            child.last_error = exc
            self._publish_start_failed(child, exc)
            await self._fail(child, ExitReason.START_FAILED, exc)
            if self._shutdown_requested:
                return

    def _blocking_dependency(self, child: Child) -> Child | None:
        """A dependency of ``child`` that is down for now (restarting, starting, being
        stopped, or dead with its exit not handled yet); ``None`` if none is."""
        for dep_id in child.spec.depends_on:
            dep = self._children.get(dep_id)
            if dep is None:
                continue
            if dep.state in (ChildState.RESTARTING, ChildState.STARTING, ChildState.STOPPING):
                return dep
            if dep.state is ChildState.RUNNING and dep.handle is not None and dep.handle._finished:
                return dep  # it died; its exit is still queued
        return None

    async def _handle_exit(
        self, child: Child, handle: ChildHandle, reason: ExitReason, exc: BaseException | None
    ) -> None:
        if (
            handle.claimed
            or handle.stopping
            or child.handle is not handle
            or self._children.get(child.id) is not child
        ):
            return  # reported already (a victim of another failure, terminated, deleted)
        handle.claimed = True
        spec = child.spec
        self._waiting.discard(child)
        self._stall_children.discard(child)
        if reason is ExitReason.START_FAILED:
            failure = exc or _returned_early(child)
            child.last_error = failure
            self._publish_start_failed(child, failure)
            await self._fail(child, reason, failure)
            return
        if exc is not None:
            child.last_error = exc
        restart = spec.restart is Restart.PERMANENT or (
            spec.restart is Restart.TRANSIENT and reason is not ExitReason.NORMAL
        )
        if not restart:
            self._publish_exit(child, handle, reason, exc, will_restart=False)
            child.state = ChildState.STOPPED
            if spec.restart is Restart.TEMPORARY:
                self._remove(child)
            return
        if reason is ExitReason.NORMAL:
            _log.warning("permanent child %r returned normally; restarting it", child.path)
        escalates = self._blocking_dependency(child) is None and self._window_full()
        self._publish_exit(child, handle, reason, exc, will_restart=not escalates)
        await self._fail(child, reason, exc)

    async def _fail(self, child: Child, reason: ExitReason, exc: BaseException | None) -> None:
        """Count one failure of ``child``, stop its victims, and schedule the restarts."""
        now = trio.current_time()
        dep = self._blocking_dependency(child)
        if dep is not None:
            # A victim of a cascade already under way: it restarts after its dependency,
            # and does not count toward the intensity limit (root causes, not victims).
            pending = dep.state is ChildState.RESTARTING and dep in self._waiting
            at = max(dep.restart_at, now) if pending else now
            wave = dep.wave if pending else self._new_wave()
            self._schedule(child, at, 0.0, child.attempt, dep.path, wave)
            return
        times = self._restart_times
        times.append(now)
        while times and times[0] < now - self.max_seconds:
            times.popleft()
        if len(times) > self.max_restarts:
            raise _Escalation(child, exc)
        backoff = self.backoff
        if (
            backoff is not None
            and child.started_at is not None
            and (
                now - child.started_at >= backoff.reset_after
                and reason is not ExitReason.START_FAILED
            )
        ):
            child.attempt = 0
        attempt = child.attempt
        child.attempt += 1
        delay = 0.0
        if backoff is not None:
            delay = backoff.delay(attempt, jitter_draw(self._seed, child.path, child.restarts))
        victims = self._victims(child)
        for victim in victims:
            self._claim(victim)  # a victim that died on its own is part of this failure
        for victim in reversed(victims):
            if victim.state in _LIVE:
                with trio.CancelScope(shield=True):
                    await self._stop_child(victim)
        wave = self._new_wave()
        at = now + delay
        self._schedule(child, at, delay, attempt, child.path, wave)
        for victim in victims:
            if self._children.get(victim.id) is not victim:
                continue  # deleted meanwhile
            if victim.state is ChildState.TERMINATED:
                continue  # it terminated itself meanwhile
            if victim.spec.restart is Restart.TEMPORARY:
                victim.state = ChildState.STOPPED
                self._remove(victim)  # OTP: a temporary child is never restarted
                continue
            self._schedule(victim, at, delay, attempt, child.path, wave)

    def _window_full(self) -> bool:
        """Whether one more restart now would exceed the intensity limit."""
        return len(self._recent_restarts()) + 1 > self.max_restarts

    def _schedule(
        self,
        child: Child,
        at: float,
        delay: float,
        attempt: int,
        cause: str,
        wave: int,
        *,
        count: bool = True,
    ) -> None:
        was_pending = child.state is ChildState.RESTARTING
        child.state = ChildState.RESTARTING
        child.restart_at = at
        child.wave = wave
        if count and not was_pending:
            child.restarts += 1
        self._stall_children.discard(child)
        self._waiting.add(child)
        self._wakeup.set()
        if not self._bus.listened:
            return
        self._publish(
            ChildRestarting(
                supervisor=self.path,
                time=trio.current_time(),
                child=child.id,
                delay=delay,
                attempt=attempt,
                cause=cause,
            )
        )

    def _victims(self, child: Child) -> list[Child]:
        """The other children a failure of ``child`` stops and restarts, in start order:
        by strategy, plus whatever depends on them (transitively). Children stopped for
        good (stopped, terminated, failed), being stopped by someone else, or being
        started by ``start_child`` / ``restart_child`` (a fresh incarnation anyway, whose
        caller waits for it) are left alone."""
        children = self._children
        if self.strategy is Strategy.ONE_FOR_ALL:
            ids = {c for c in children if c != child.id}
        elif self.strategy is Strategy.REST_FOR_ONE:
            ids = {c.id for c in children.values() if c.order > child.order}
        else:
            ids = set()
        if self._dependents:
            todo = [child.id, *ids]
            while todo:
                for dependent in self._dependents.get(todo.pop(), ()):
                    if dependent not in ids:
                        ids.add(dependent)
                        todo.append(dependent)
        ids.discard(child.id)
        if not ids:
            return []
        wanted = (ChildState.STARTING, ChildState.RUNNING, ChildState.RESTARTING)
        return sorted(
            (
                c
                for c in (children.get(i) for i in ids)
                if c is not None and c.state in wanted and not _manual_start(c)
            ),
            key=_by_order,
        )

    # ---------------------------------------------------------- the watchdog

    def _arm_watchdog(self, child: Child) -> None:
        self._stall_children.add(child)
        if self._watchdog_scope is None and self._nursery is not None:
            self._watchdog_scope = trio.CancelScope()
            self._nursery.start_soon(self._watchdog, self._watchdog_scope)
        else:
            self._watchdog_wakeup.set()

    async def _watchdog(self, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                now = trio.current_time()
                next_check = math.inf
                for child in list(self._stall_children):
                    handle = child.handle
                    timeout = child.spec.stall_timeout
                    if handle is None or timeout is None or child.state is not ChildState.RUNNING:
                        self._stall_children.discard(child)
                        continue
                    if handle._idle:
                        next_check = min(next_check, now + timeout)  # waiting for work
                        continue
                    due = handle.last_progress + timeout
                    if due <= now:
                        self._stall_children.discard(child)
                        handle.inject(
                            Stalled(f"child {child.path!r} made no progress for {timeout:g}s"),
                            ExitReason.STALLED,
                        )
                    else:
                        next_check = min(next_check, due)
                with trio.move_on_at(next_check):
                    await self._watchdog_wakeup.wait()
                self._watchdog_wakeup = trio.Event()

    # ------------------------------------------------------------ public API

    def _require_running(self) -> trio.Nursery:
        if not self._accepting or self._nursery is None:
            raise SupervisorNotRunning(f"supervisor {self._label!r} is not running")
        return self._nursery

    def _lookup(self, child_id: str) -> Child:
        child = self._children.get(child_id)
        if child is None:
            raise ChildNotFound(f"no child {child_id!r} in supervisor {self._label!r}")
        return child

    def _caller_chain(self, what: str) -> list[ChildHandle] | None:
        """The incarnations from the calling child up to this supervisor's child it runs
        under, or ``None`` when the caller does not run below this supervisor.

        Raises ``RuntimeError`` if one of them is not ready yet: this supervisor may be
        waiting for that readiness (its initial start, a restart wave), so the call
        would wait for itself.
        """
        handle = _current_child.get()
        chain: list[ChildHandle] = []
        while handle is not None:
            chain.append(handle)
            sup = handle.child.sup
            if sup is self:
                break
            handle = sup._parent
        else:
            return None
        if not all(h._started for h in chain):
            raise RuntimeError(
                f"child {chain[0].path!r} called {what} on supervisor {self._label!r} "
                f"before {'it' if not chain[0]._started else 'the subtree it runs in'} was "
                "ready: that would wait for itself"
            )
        return chain

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add a child and start it; return the value it gave to ``task_status.started()``.

        Raises ``ValueError`` for a duplicate id or an unknown ``depends_on``,
        :class:`ChildStartError` (cause attached) if it fails before it is ready (the
        spec is then not kept), :class:`SupervisorNotRunning` if the supervisor stops
        meanwhile. Until it is ready, a sibling's failure leaves it alone.

        Example::

            conn = await sup.start_child(ChildSpec("conn-7", connection, args=(sock,)))
        """
        self._caller_chain("start_child")
        self._require_running()
        order_specs([spec], existing=list(self._children))
        async with self._lock:
            self._require_running()
            if spec.id in self._children:
                raise ValueError(f"duplicate child id {spec.id!r}")
            order_specs([spec], existing=list(self._children))
            child = self._add(spec)
            handle = self._spawn(child, manual=True)
        try:
            value = await self._await_start(child, handle, forget=True)
        except _StartFailed as failed:
            if child.handle is handle:
                child.state = ChildState.FAILED  # an actor's waiting callers fail at once
                self._remove(child)
            self._raise_if_stopping(child, failed.exc)
            raise ChildStartError(
                child.path, f"child {child.path!r} failed to start: {_describe(failed.exc)}"
            ) from failed.exc
        except _Preempted:
            raise self._preempted(child) from None
        except BaseException:
            if child.handle is handle and child.state is not ChildState.TERMINATED:
                self._remove(child)
            raise
        self._raise_if_stopping(child, None)
        return value

    def _raise_if_stopping(self, child: Child, cause: BaseException | None) -> None:
        """Shutdown wins over a start a caller waits for: once the supervisor stops
        accepting work, the start's outcome (ready or failed on its own while the others
        were being stopped) is reported as :class:`SupervisorNotRunning`."""
        if not self._accepting:
            raise SupervisorNotRunning(
                f"supervisor {self._label!r} stopped while child {child.path!r} was starting"
            ) from cause

    def _preempted(self, child: Child) -> SupervisorError:
        if not self._accepting:
            return SupervisorNotRunning(
                f"supervisor {self._label!r} stopped while child {child.path!r} was starting"
            )
        return ChildStartError(child.path, f"child {child.path!r} was stopped before it was ready")

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child (within its budget) and keep its spec; it is not restarted.

        A child may terminate itself (or the subtree it runs in): the stop then starts
        at once and the caller is cancelled with the rest of that incarnation.
        """
        chain = self._caller_chain("terminate_child")
        child = self._lookup(child_id)
        if chain is not None and child.handle is not None and child.handle in chain:
            self._stop_self(child, ChildState.TERMINATED)
            await trio.lowlevel.checkpoint()
            return
        async with self._lock:
            child = self._lookup(child_id)
            handle = child.handle
            with trio.CancelScope(shield=True):
                await self._stop_child(child)
            if handle is not None:
                self._claim_as_unhandled(child, handle)
            child.state = ChildState.TERMINATED
            child.restart_at = math.inf
            self._waiting.discard(child)
        self._wakeup.set()

    def _claim_as_unhandled(self, child: Child, handle: ChildHandle) -> None:
        """An exit still queued when a manual operation took the child over: report it
        (it is not restarted), and drop it from the queue's handling."""
        if handle.manual and not handle._started:
            return  # a failed start its caller reports
        if handle._finished and not handle.stopping and not handle.claimed:
            handle.claimed = True
            self._report_unhandled(child, handle, handle._exit_reason, handle._exit_exc)

    async def restart_child(self, child_id: str) -> Any:
        """Stop a child if it runs, start it again, and return its new ``started()`` value.

        A manual restart does not count toward the restart intensity. Raises
        :class:`ChildStartError` if the new incarnation fails before it is ready (the
        child is then ``FAILED``), :class:`SupervisorNotRunning` if the supervisor stops
        meanwhile. A child may restart itself: the stop then starts at once, the caller is
        cancelled with its incarnation, and the next one is started without waiting.
        """
        chain = self._caller_chain("restart_child")
        self._require_running()
        child = self._lookup(child_id)
        if chain is not None and child.handle is not None and child.handle in chain:
            self._stop_self(child, ChildState.RESTARTING)
            await trio.lowlevel.checkpoint()
            return None
        async with self._lock:
            self._require_running()
            child = self._lookup(child_id)
            old = child.handle
            with trio.CancelScope(shield=True):
                await self._stop_child(child)
            if old is not None:
                self._claim_as_unhandled(child, old)
            self._require_running()  # a shutdown asked for during the stop wins
            if old is not None and not old._finished:
                # It overstayed its budget and still runs: never two incarnations at once
                # (an actor's would share one mailbox). The loop starts the next one when
                # this one ends, as it does for a crash restart.
                now = trio.current_time()
                self._schedule(child, now, 0.0, child.attempt, child.path, self._new_wave())
                raise ChildStartError(
                    child.path,
                    f"child {child.path!r} overstayed its stop and still runs: it restarts "
                    "when that incarnation ends",
                )
            self._waiting.discard(child)
            child.restarts += 1
            handle = self._spawn(child, manual=True)
        try:
            value = await self._await_start(child, handle)
        except _StartFailed as failed:
            if child.handle is handle and child.state in (ChildState.STARTING, ChildState.STOPPING):
                child.state = ChildState.FAILED  # unless the loop took it over meanwhile
            self._raise_if_stopping(child, failed.exc)
            raise ChildStartError(
                child.path, f"child {child.path!r} failed to restart: {_describe(failed.exc)}"
            ) from failed.exc
        except _Preempted:
            raise self._preempted(child) from None
        self._raise_if_stopping(child, None)
        return value

    def delete_child(self, child_id: str) -> None:
        """Forget a child that is not running (terminated, stopped or failed)."""
        child = self._lookup(child_id)
        if child.state in (
            ChildState.STARTING,
            ChildState.RUNNING,
            ChildState.STOPPING,
            ChildState.RESTARTING,
        ):
            raise SupervisorError(
                f"child {child.path!r} is {child.state.value}: terminate_child() it first"
            )
        dependents = [d for d in self._dependents.get(child_id, ()) if d in self._children]
        if dependents:
            raise ValueError(
                f"child {child.path!r} cannot be deleted: {', '.join(dependents)} depend on it"
            )
        self._remove(child)
        self._wakeup.set()

    def which_children(self) -> list[ChildInfo]:
        """One :class:`ChildInfo` per child, in start order."""
        return [child.info() for child in self._children.values()]

    def count_children(self) -> ChildCounts:
        """How many children: specs, active (running), supervisors, workers."""
        children = self._children.values()
        sups = sum(1 for c in children if c.spec.kind == "supervisor")
        return ChildCounts(
            specs=len(self._children),
            active=sum(1 for c in children if c.state is ChildState.RUNNING),
            supervisors=sups,
            workers=len(self._children) - sups,
        )

    def events(self, *, buffer: int | None = None) -> EventStream:
        """An async iterator over this supervisor's events and its subtree's.

        It holds at most ``buffer`` undelivered events (default: the supervisor's
        ``event_buffer``; ``0`` or less: no limit). A reader that falls further behind
        loses the *oldest* ones (counted in ``dropped``); the supervisor never waits for
        it. It ends after this supervisor's ``SupervisorStopped``, which it always gets.

        Example::

            async for event in sup.events():
                print(type(event).__name__, getattr(event, "path", ""))
        """
        return self._bus.stream(self._event_buffer if buffer is None else buffer)

    def subscribe(self, hook: Callable[[Event], Any]) -> Callable[[], None]:
        """Call ``hook(event)`` synchronously for every event; returns an unsubscribe function.

        A hook must be quick and must not block; an exception in it is logged and ignored.
        """
        return self._bus.subscribe(hook)

    def shutdown_nowait(self) -> None:
        """Ask the supervisor to stop all its children (reverse order) and return.

        From now on it accepts no more ``start_child`` / ``restart_child``.
        """
        self._shutdown_requested = True
        self._accepting = False
        self._wakeup.set()

    async def shutdown(self) -> ShutdownReport:
        """Stop all children in reverse order and wait; returns the :class:`ShutdownReport`."""
        self.shutdown_nowait()
        if self._running:
            await self._stopped.wait()
        if self._report is None:
            raise SupervisorNotRunning("the supervisor never ran")
        return self._report

    @property
    def shutdown_report(self) -> ShutdownReport | None:
        """The report of the last time this supervisor stopped, if it has."""
        return self._report

    def child_handle(self, child_id: str) -> ChildHandle | None:
        """The latest incarnation of a child, if any (for introspection and testing)."""
        return self._lookup(child_id).handle

    def health(self) -> HealthReport:
        """Liveness and readiness of this supervisor and its subtree, with reasons."""
        reasons: list[str] = []
        live = self._running
        ready = self._accepting
        if not self._running:
            reasons.append(f"{self.path or '<root>'}: not running")
        elif self.max_restarts and len(self._recent_restarts()) >= self.max_restarts:
            live = False
            reasons.append(
                f"{self.path or '<root>'}: restart storm ({len(self._restart_times)} restarts "
                f"in {self.max_seconds:g}s)"
            )
        for child in self._children.values():
            handle = child.handle
            sub = handle.subtree if handle is not None else None
            if sub is not None:
                report = sub.health()
                live = live and report.live
                ready = ready and (report.ready or not child.spec.significant)
                reasons.extend(report.reasons)
            if child.state in (ChildState.TERMINATED, ChildState.STOPPED):
                continue
            if child.state is not ChildState.RUNNING:
                if child.spec.significant:
                    ready = False
                reasons.append(f"{child.path}: {child.state.value}")
            elif child.health is not Health.OK:
                if child.health is Health.FAILED and child.spec.significant:
                    ready = False
                detail = f" ({child.health_reason})" if child.health_reason else ""
                reasons.append(f"{child.path}: {child.health.value}{detail}")
        return HealthReport(live=live, ready=ready and live, reasons=tuple(reasons))

    def _recent_restarts(self) -> deque[float]:
        now = trio.current_time()
        times = self._restart_times
        while times and times[0] < now - self.max_seconds:
            times.popleft()
        return times

    def snapshot(self) -> dict[str, Any]:
        """A nested, JSON-serialisable picture of this tree (see :func:`snapshot`)."""
        from ._snapshot import snapshot

        return snapshot(self)

    def children_records(self) -> list[Child]:
        """The internal records, for introspection within this package."""
        return list(self._children.values())


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _returned_early(child: Child) -> RuntimeError:
    return RuntimeError(f"child {child.path!r} returned before calling task_status.started()")


@asynccontextmanager
async def open_supervisor(
    children: Iterable[ChildSpec] = (), **options: Any
) -> AsyncIterator[Supervisor]:
    """Run a :class:`Supervisor` for the duration of the ``async with`` block.

    Entering waits until every child is ready (raising :class:`ChildStartError`, naming
    the child, if one fails to start). Leaving stops the children in reverse order
    within their budgets. If the supervisor gives up, the block is cancelled and
    :class:`RestartIntensityExceeded` is raised (one exception, its cause attached).

    Example::

        async with open_supervisor([ChildSpec("a", worker)], max_restarts=3) as sup:
            await sup.start_child(ChildSpec("b", worker))
    """
    sup = Supervisor(children, **options)
    async with _collapsing(), trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        token = _current_registry.set(sup._registry)
        try:
            yield sup
        finally:
            _current_registry.reset(token)
            sup.shutdown_nowait()


_SPEC_OPTIONS = ("restart", "depends_on", "significant", "start_timeout")


def supervisor_spec(
    id: str, children: Iterable[ChildSpec], *, shutdown: float | None = None, **options: Any
) -> ChildSpec:
    """A :class:`ChildSpec` that runs a nested :class:`Supervisor`.

    Its ``shutdown`` budget defaults to the sum of its children's budgets plus one
    second (they stop one after another; the second covers its own bookkeeping), and
    its ``start_timeout`` to the sum of theirs plus one second (they start one after
    another), or ``None`` if one of them has none. Children added later with
    ``start_child`` do not change either. Other keyword options go to the
    :class:`Supervisor`, except the :class:`ChildSpec` ones: ``restart``,
    ``depends_on``, ``significant``, ``start_timeout``.

    Example::

        supervisor_spec("db", [ChildSpec("primary", primary), ChildSpec("r1", replica)])
    """
    spec_options = {k: options.pop(k) for k in _SPEC_OPTIONS if k in options}
    specs = list(children)
    sup = Supervisor(specs, name=id, **options)
    budget = shutdown if shutdown is not None else sum(s.shutdown for s in specs) + 1.0
    if "start_timeout" not in spec_options:
        timeouts = [s.start_timeout for s in specs]
        spec_options["start_timeout"] = (
            None if None in timeouts else sum(t for t in timeouts if t is not None) + 1.0
        )
    return ChildSpec(id, sup.run, shutdown=budget, kind="supervisor", **spec_options)
