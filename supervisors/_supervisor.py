"""The supervisor: starts children in readiness order, restarts them by strategy,
gives up past its restart intensity, and stops them in reverse order within budgets."""

from __future__ import annotations

import heapq
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

__all__ = ["Supervisor", "open_supervisor", "supervisor_spec"]

_log = logging.getLogger("supervisors")

_LIVE = (ChildState.STARTING, ChildState.RUNNING)


class _StartFailed(Exception):
    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc


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


class Supervisor:
    """Runs children, restarts them by ``strategy``, and stops them in reverse order.

    A supervisor is itself a child: ``ChildSpec("db", Supervisor([...]).run)`` nests
    one tree in another, to any depth; a supervisor that gives up raises
    :class:`RestartIntensityExceeded`, which its parent treats as that child's failure.

    Options: ``strategy``; ``max_restarts`` restarts allowed within ``max_seconds``
    (sliding window, monotonic clock; more -> stop everything and raise); ``backoff``
    between restarts (``None``: restart at once); ``seed`` makes backoff jitter
    reproducible; ``name`` is shown by introspection; ``on_event`` is subscribed before
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
        backoff: Backoff | None = None,
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
        self._exits: deque[tuple[Child, ChildHandle, ExitReason, BaseException | None]] = deque()
        self._heap: list[tuple[float, int, Child]] = []
        self._wakeup = trio.Event()
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._shutdown_requested = False
        self._accepting = False
        self._overstays: list[tuple[ChildHandle, float, float, float, tuple[str, ...]]] = []
        self._watchdog_scope: trio.CancelScope | None = None
        self._watchdog_wakeup = trio.Event()
        self._stall_children: set[Child] = set()
        self._parent: ChildHandle | None = None
        self._started_at = 0.0

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
        self._registry.remove(child)

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
            self._registry = parent.child.sup._registry
            self._bus.parent = parent.child.sup._bus
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
                    self._accepting = True
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
                    outcome = "cancelled"
                    raise
                finally:
                    self._accepting = False
                    with trio.CancelScope(shield=True):
                        await self._stop_all()
                    if self._watchdog_scope is not None:
                        self._watchdog_scope.cancel()
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
        else:
            self._bus.close_streams()
        self._running = False
        self._nursery = None
        self._stopped.set()

    async def _start_initial(self) -> None:
        for spec in self._specs:
            self._add(spec)
        for child in list(self._children.values()):
            try:
                await self._start(child)
            except _StartFailed as failed:
                child.state = ChildState.FAILED
                raise ChildStartError(
                    child.path,
                    f"child {child.path!r} failed to start: {_describe(failed.exc)}",
                ) from failed.exc

    # --------------------------------------------------------- starting one

    async def _start(self, child: Child) -> Any:
        """Start one incarnation and wait until it is ready; raise _StartFailed if not."""
        assert self._nursery is not None
        spec = child.spec
        child.incarnation += 1
        handle = ChildHandle(child)
        child.handle = handle
        child.state = ChildState.STARTING
        child.health = Health.OK
        child.health_reason = ""
        self._nursery.start_soon(self._child_main, child, handle, name=child.path)
        try:
            if spec.start_timeout is None:
                await handle._ready.wait()
            else:
                with trio.move_on_after(spec.start_timeout):
                    await handle._ready.wait()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._stop_child(child)
            child.state = ChildState.TERMINATED
            raise
        if not handle._ready.is_set():
            with trio.CancelScope(shield=True):
                await self._stop_child(child)
            exc: BaseException = TimeoutError(
                f"child {child.path!r} did not become ready within {spec.start_timeout:g}s"
            )
            self._publish_start_failed(child, exc)
            raise _StartFailed(exc)
        if not handle._started:
            exc = handle._exit_exc or RuntimeError(
                f"child {child.path!r} returned before calling task_status.started()"
            )
            child.last_error = exc
            self._publish_start_failed(child, exc)
            raise _StartFailed(exc)
        now = trio.current_time()
        child.state = ChildState.RUNNING
        child.started_at = now
        if spec.stall_timeout is not None:
            self._arm_watchdog(child)
        if self._bus.listened:
            self._publish(
                ChildStarted(
                    supervisor=self.path, time=now, child=spec.id, incarnation=child.incarnation
                )
            )
        return handle._value

    def _publish_start_failed(self, child: Child, exc: BaseException) -> None:
        self._publish(
            ChildStartFailed(
                supervisor=self.path, time=trio.current_time(), child=child.id, exception=exc
            )
        )

    async def _child_main(self, child: Child, handle: ChildHandle) -> None:
        _current_child.set(handle)
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
        finally:
            if handle._injected is not None:
                exc = handle._injected
                reason = handle._injected_reason
            elif handle.stopping:
                reason = ExitReason.SHUTDOWN
            if not handle._started:
                reason = ExitReason.START_FAILED
            handle._finish(exc)
        if handle.stopping:
            self._publish_exit(child, handle, ExitReason.SHUTDOWN, exc, will_restart=False)
        elif handle._started:
            self._exits.append((child, handle, reason, exc))
            self._wakeup.set()
        if child.state is ChildState.RESTARTING:
            # Its restart may have been waiting for this incarnation to end.
            heapq.heappush(self._heap, (child.restart_at, child.order, child))
            self._wakeup.set()

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

    # --------------------------------------------------------- stopping one

    async def _stop_child(self, child: Child) -> None:
        """Cancel the child and wait for it up to its budget (shielding is the caller's)."""
        handle = child.handle
        if handle is None or handle._finished:
            return
        budget = child.spec.shutdown
        deadline = trio.current_time() + budget
        handle.stopping = True
        handle.stop_deadline = deadline
        child.state = ChildState.STOPPING
        self._stall_children.discard(child)
        handle.scope.cancel()
        with trio.move_on_at(deadline):
            await handle.wait_finished()
        if handle.finished and not handle._abandoned:
            return
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
            self._nursery.start_soon(self._note_overstay, handle, budget, deadline, stack)

    async def _note_overstay(
        self, handle: ChildHandle, budget: float, deadline: float, stack: tuple[str, ...]
    ) -> None:
        with trio.CancelScope(shield=True):
            await handle.wait_finished()
        self._overstays.append((handle, budget, deadline, trio.current_time(), stack))

    async def _stop_all(self) -> None:
        for child in reversed(list(self._children.values())):
            if child.handle is not None and not child.handle._finished:
                await self._stop_child(child)
            if child.state not in (ChildState.FAILED, ChildState.STOPPED):
                child.state = ChildState.TERMINATED

    # ------------------------------------------------------------ the loop

    async def _serve(self) -> None:
        while not self._shutdown_requested:
            if not self._exits and not (self._heap and self._heap[0][0] <= trio.current_time()):
                deadline = self._heap[0][0] if self._heap else math.inf
                with trio.move_on_at(deadline):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                continue
            async with self._lock:
                await self._process()

    async def _process(self) -> None:
        while self._exits and not self._shutdown_requested:
            child, handle, reason, exc = self._exits.popleft()
            if child.handle is not handle or handle.stopping:
                continue
            await self._handle_exit(child, handle, reason, exc)
        now = trio.current_time()
        while self._heap and self._heap[0][0] <= now and not self._shutdown_requested:
            at, _, child = heapq.heappop(self._heap)
            if (
                child.state is not ChildState.RESTARTING
                or child.restart_at != at
                or self._children.get(child.id) is not child
            ):
                continue
            if child.handle is not None and not child.handle._finished:
                continue  # re-woken by _child_main when the old incarnation has ended
            blocked = self._blocking_dependency(child)
            if blocked is not None:
                continue  # rescheduled along with its dependency
            try:
                await self._start(child)
            except _StartFailed as failed:
                await self._fail(child, ExitReason.START_FAILED, failed.exc)

    def _blocking_dependency(self, child: Child) -> Child | None:
        for dep_id in child.spec.depends_on:
            dep = self._children.get(dep_id)
            if dep is None:
                continue
            if dep.state is ChildState.RESTARTING or dep.state is ChildState.STARTING:
                return dep
            if dep.state is ChildState.RUNNING and dep.handle is not None and dep.handle._finished:
                return dep  # it died; its exit is still queued
        return None

    async def _handle_exit(
        self, child: Child, handle: ChildHandle, reason: ExitReason, exc: BaseException | None
    ) -> None:
        spec = child.spec
        if exc is not None:
            child.last_error = exc
        restart = spec.restart is Restart.PERMANENT or (
            spec.restart is Restart.TRANSIENT and reason is not ExitReason.NORMAL
        )
        if not restart:
            self._publish_exit(child, handle, reason, exc, will_restart=False)
            child.state = ChildState.STOPPED
            self._stall_children.discard(child)
            if spec.restart is Restart.TEMPORARY:
                self._remove(child)
            self._release_dependents(child)
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
            # A victim of a cascade already under way: it restarts with its dependency,
            # and does not count toward the intensity limit (root causes, not victims).
            self._schedule(
                child, max(dep.restart_at, now), 0.0, child.attempt, dep.path, count=False
            )
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
            delay = backoff.delay(attempt, jitter_draw(self.seed, child.path, child.restarts))
        victims = self._victims(child)
        for victim in reversed(victims):
            if victim.state in _LIVE:
                with trio.CancelScope(shield=True):
                    await self._stop_child(victim)
        at = now + delay
        self._schedule(child, at, delay, attempt, child.path)
        for victim in victims:
            self._schedule(victim, at, delay, attempt, child.path)

    def _window_full(self) -> bool:
        """Whether one more restart now would exceed the intensity limit."""
        return len(self._recent_restarts()) + 1 > self.max_restarts

    def _schedule(
        self, child: Child, at: float, delay: float, attempt: int, cause: str, *, count: bool = True
    ) -> None:
        was_pending = child.state is ChildState.RESTARTING
        child.state = ChildState.RESTARTING
        child.restart_at = at
        if count and not was_pending:
            child.restarts += 1
        self._stall_children.discard(child)
        heapq.heappush(self._heap, (at, child.order, child))
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

    def _release_dependents(self, child: Child) -> None:
        """A dependency stopped for good: dependents waiting for it restart now."""
        now = trio.current_time()
        for dependent_id in self._dependents.get(child.id, ()):
            dependent = self._children.get(dependent_id)
            if dependent is not None and dependent.state is ChildState.RESTARTING:
                dependent.restart_at = min(dependent.restart_at, now)
                heapq.heappush(self._heap, (dependent.restart_at, dependent.order, dependent))

    def _victims(self, child: Child) -> list[Child]:
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
        if not ids:
            return []
        wanted = (ChildState.STARTING, ChildState.RUNNING, ChildState.RESTARTING)
        return sorted(
            (c for c in (children.get(i) for i in ids) if c is not None and c.state in wanted),
            key=lambda c: c.order,
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

    def _refuse_self_call(self, what: str) -> None:
        handle = _current_child.get()
        if handle is not None and handle.child.sup is self and not handle._started:
            raise RuntimeError(
                f"child {handle.path!r} called {what} on its own supervisor before it was "
                "ready: that would wait for itself"
            )

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add a child and start it; return the value it gave to ``task_status.started()``.

        Raises ``ValueError`` for a duplicate id or an unknown ``depends_on``,
        :class:`ChildStartError` (cause attached) if it fails before it is ready.

        Example::

            conn = await sup.start_child(ChildSpec("conn-7", connection, args=(sock,)))
        """
        self._refuse_self_call("start_child")
        self._require_running()
        order_specs([spec], existing=list(self._children))
        async with self._lock:
            self._require_running()
            if spec.id in self._children:
                raise ValueError(f"duplicate child id {spec.id!r}")
            child = self._add(spec)
            try:
                return await self._start(child)
            except _StartFailed as failed:
                self._remove(child)
                raise ChildStartError(
                    child.path, f"child {child.path!r} failed to start: {_describe(failed.exc)}"
                ) from failed.exc
            except BaseException:
                self._remove(child)
                raise

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child (within its budget) and keep its spec; it is not restarted."""
        self._refuse_self_call("terminate_child")
        async with self._lock:
            child = self._lookup(child_id)
            with trio.CancelScope(shield=True):
                await self._stop_child(child)
            child.state = ChildState.TERMINATED
            child.restart_at = math.inf

    async def restart_child(self, child_id: str) -> Any:
        """Stop a child if it runs, start it again, and return its new ``started()`` value.

        A manual restart does not count toward the restart intensity.
        """
        self._refuse_self_call("restart_child")
        self._require_running()
        async with self._lock:
            child = self._lookup(child_id)
            with trio.CancelScope(shield=True):
                await self._stop_child(child)
            child.restarts += 1
            try:
                return await self._start(child)
            except _StartFailed as failed:
                child.state = ChildState.FAILED
                raise ChildStartError(
                    child.path, f"child {child.path!r} failed to restart: {_describe(failed.exc)}"
                ) from failed.exc

    def delete_child(self, child_id: str) -> None:
        """Forget a child that is not running (terminated, stopped or failed)."""
        child = self._lookup(child_id)
        if child.state in (ChildState.STARTING, ChildState.RUNNING, ChildState.STOPPING):
            raise SupervisorError(
                f"child {child.path!r} is {child.state.value}: terminate_child() it first"
            )
        dependents = [d for d in self._dependents.get(child_id, ()) if d in self._children]
        if dependents:
            raise ValueError(
                f"child {child.path!r} cannot be deleted: {', '.join(dependents)} depend on it"
            )
        self._remove(child)

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
        """Ask the supervisor to stop all its children (reverse order) and return."""
        self._shutdown_requested = True
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
        """The running incarnation of a child, if any (for introspection and testing)."""
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


def supervisor_spec(
    id: str, children: Iterable[ChildSpec], *, shutdown: float | None = None, **options: Any
) -> ChildSpec:
    """A :class:`ChildSpec` that runs a nested :class:`Supervisor`.

    Its shutdown budget defaults to the sum of its children's budgets (they stop one
    after another). Other keyword options go to the :class:`Supervisor`, except the
    :class:`ChildSpec` ones: ``restart``, ``depends_on``, ``significant``.

    Example::

        supervisor_spec("db", [ChildSpec("primary", primary), ChildSpec("r1", replica)])
    """
    spec_keys = ("restart", "depends_on", "significant")
    spec_options = {k: options.pop(k) for k in spec_keys if k in options}
    specs = list(children)
    sup = Supervisor(specs, name=id, **options)
    budget = shutdown if shutdown is not None else sum(s.shutdown for s in specs) + 1.0
    return ChildSpec(id, sup.run, shutdown=budget, kind="supervisor", **spec_options)
