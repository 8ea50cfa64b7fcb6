"""Typed, frozen supervision events and the bus that delivers them.

Every event carries ``supervisor`` (the path of the supervisor that emitted it, ``""``
for the root) and ``time`` (``trio.current_time()``). Child events also carry ``child``
(its id) and have ``path`` (``"supervisor/child"``). Events flow up the tree: the root's
subscribers see every event of every nested supervisor.
"""

from __future__ import annotations

import enum
import logging
import math
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from ._health import Health

__all__ = [
    "ChildExited",
    "ChildOverstayed",
    "ChildRestarting",
    "ChildStartFailed",
    "ChildStarted",
    "Escalating",
    "Event",
    "EventStream",
    "ExitReason",
    "HealthChanged",
    "Overstay",
    "ShutdownReport",
    "SupervisorStarted",
    "SupervisorStopped",
]

_log = logging.getLogger("supervisors")


class ExitReason(enum.Enum):
    """Why a child's incarnation ended."""

    NORMAL = "normal"  # the target returned
    EXCEPTION = "exception"  # the target raised
    SHUTDOWN = "shutdown"  # the supervisor stopped it
    KILLED = "killed"  # an exception was injected (supervisors.testing.kill, ChaosMonkey)
    STALLED = "stalled"  # the progress watchdog fired
    START_FAILED = "start_failed"  # it failed before it was ready


def _join(supervisor: str, child: str) -> str:
    return f"{supervisor}/{child}" if supervisor else child


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all supervision events."""

    supervisor: str
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class _ChildEvent(Event):
    child: str

    @property
    def path(self) -> str:
        """The child's path from the root, e.g. ``"db/replica-1"``."""
        return _join(self.supervisor, self.child)


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorStarted(Event):
    """All initial children of a supervisor are ready."""

    children: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorStopped(Event):
    """A supervisor has stopped all its children; the last event it sends.

    ``reason``: ``"shutdown"`` (``shutdown()``, leaving ``open_supervisor``, or its
    parent stopping it), ``"escalated"`` (it gave up: :class:`RestartIntensityExceeded`),
    ``"start failed"`` (an initial child failed to start: :class:`ChildStartError`) or
    ``"cancelled"`` (the scope running it was cancelled from outside).
    """

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildStarted(_ChildEvent):
    """The child called ``task_status.started()``."""

    incarnation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildStartFailed(_ChildEvent):
    """The child raised (or returned) before it was ready."""

    exception: BaseException


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildExited(_ChildEvent):
    """An incarnation ended; ``will_restart`` says whether the supervisor restarts it."""

    reason: ExitReason
    exception: BaseException | None
    incarnation: int
    will_restart: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildRestarting(_ChildEvent):
    """The child will be started again after ``delay`` seconds.

    ``cause`` is the path of the child whose failure started this restart (the child
    itself, or the sibling it depends on / shares a strategy with).
    """

    delay: float
    attempt: int
    cause: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildOverstayed(_ChildEvent):
    """The child was still running when its shutdown budget ran out."""

    budget: float
    stack: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthChanged(_ChildEvent):
    """The child reported a new health status."""

    status: Health
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalating(_ChildEvent):
    """The restart intensity was exceeded: the supervisor stops and raises."""

    exception: BaseException | None
    restarts: int
    window: float


@dataclass(frozen=True, slots=True)
class Overstay:
    """One child that overstayed its shutdown budget.

    ``overstayed_by`` is how long after its deadline it let go (0.0 when abandoned work,
    e.g. a thread, was cut off at the deadline); ``stack`` is where it was at the deadline.
    """

    path: str
    budget: float
    overstayed_by: float
    stack: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownReport(Event):
    """A supervisor stopped; ``overstayed`` names each child that outlived its budget.

    Example::

        report = await sup.shutdown()
        for o in report.overstayed:
            print(o.path, "overstayed by", o.overstayed_by, "".join(o.stack))
    """

    duration: float
    overstayed: tuple[Overstay, ...]

    @property
    def clean(self) -> bool:
        """True when every child stopped within its budget."""
        return not self.overstayed


class EventStream:
    """An async iterator over supervision events (see :meth:`Supervisor.events`).

    It subscribes when created, so no event is missed between creation and the first
    ``__anext__``. It holds at most ``buffer`` undelivered events: a reader that falls
    further behind loses the *oldest* ones and :attr:`dropped` counts them (the
    supervisor never waits for a slow reader). The newest events are always kept, so
    the stream always ends with the supervisor's ``ShutdownReport`` and
    ``SupervisorStopped`` (with ``buffer >= 2``); then it ends.

    Example::

        async with sup.events() as stream:
            async for event in stream:
                print(event)
    """

    def __init__(self, bus: EventBus, buffer: float) -> None:
        self._queue: deque[Event] = deque()
        self._buffer = buffer
        self._lot = trio.lowlevel.ParkingLot()
        self._ended = False
        self._bus = bus
        self.dropped = 0
        bus._streams.add(self)

    def _put(self, event: Event) -> None:
        if self._ended:
            return
        self._queue.append(event)
        if len(self._queue) > self._buffer:
            self._queue.popleft()  # a slow reader loses the oldest, never the newest
            self.dropped += 1
        self._lot.unpark_all()

    def _close(self) -> None:
        self._ended = True
        self._lot.unpark_all()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._queue:
            if self._ended:
                raise StopAsyncIteration
            await self._lot.park()
        event = self._queue.popleft()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return event

    async def aclose(self) -> None:
        """Unsubscribe and end the stream (undelivered events are discarded)."""
        self._bus._streams.discard(self)
        self._queue.clear()
        self._close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class EventBus:
    """Fans events out to sync hooks and :class:`EventStream` readers, then upward."""

    __slots__ = ("_hooks", "_streams", "parent")

    def __init__(self) -> None:
        self._hooks: list[Callable[[Event], Any]] = []
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self.parent: EventBus | None = None

    def subscribe(self, hook: Callable[[Event], Any]) -> Callable[[], None]:
        self._hooks.append(hook)

        def unsubscribe() -> None:
            if hook in self._hooks:
                self._hooks.remove(hook)

        return unsubscribe

    def stream(self, buffer: int = 1000) -> EventStream:
        return EventStream(self, buffer if buffer > 0 else math.inf)

    @property
    def listened(self) -> bool:
        """Whether anyone (here or up the tree) would receive an event."""
        bus: EventBus | None = self
        while bus is not None:
            if bus._hooks or bus._streams:
                return True
            bus = bus.parent
        return False

    def publish(self, event: Event) -> None:
        bus: EventBus | None = self
        while bus is not None:
            for hook in tuple(bus._hooks):
                try:
                    hook(event)
                except Exception:
                    _log.exception("supervision event subscriber %r failed", hook)
            if bus._streams:
                for stream in tuple(bus._streams):
                    stream._put(event)
            bus = bus.parent

    def close_streams(self) -> None:
        """End this bus's own streams (not those of the buses above it)."""
        for stream in tuple(self._streams):
            stream._close()
