"""Fault plans: kills at virtual times, delayed and dropped mailbox messages."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from .._actor import _DROP, Mailbox
from .._child import ChildState
from .._events import ChildStarted, Event
from .._exceptions import ChildNotFound, Killed
from .._registry import Registry
from .._spec import ChildSpec, Restart
from ._tree import tree_registry, tree_root

__all__ = ["DelayMessages", "DropMessages", "FaultPlan", "KillAt"]

ANY, CALL, CAST = "any", "call", "cast"


@dataclass(frozen=True, slots=True)
class KillAt:
    """Kill the child at ``path`` ``at`` seconds after the plan starts.

    If it is not running then (starting, restarting), the kill lands on its next
    incarnation as soon as that one runs; the kills after it do not wait for it.
    ``path`` must name one child of the tree when the plan starts.
    """

    at: float
    path: str
    message: str = "fault plan"


@dataclass(frozen=True, slots=True)
class DelayMessages:
    """Hold each of the next ``count`` messages to actor ``path`` (from ``start`` seconds
    into the plan) for ``delay`` seconds before it is handled. A message held when its
    actor stops is handled first by the next incarnation."""

    path: str
    delay: float
    count: int = 1
    start: float = 0.0
    kind: str = ANY


@dataclass(frozen=True, slots=True)
class DropMessages:
    """Drop the next ``count`` messages to actor ``path`` (from ``start`` seconds into the
    plan), of any kind unless ``kind`` is ``"call"`` or ``"cast"``. A dropped call makes
    its caller time out."""

    path: str
    count: int = 1
    start: float = 0.0
    kind: str = ANY


Fault = KillAt | DelayMessages | DropMessages


def _check_seconds(name: str, value: object) -> None:
    """A plan's times and delays: a number >= 0 (``inf``: never / for ever), never NaN,
    which trio would refuse only once the plan runs, crashing the plan or the actor."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or math.isnan(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


@dataclass
class FaultPlan:
    """A replayable list of faults, run as a child of the tree it targets.

    Times are virtual seconds from the plan's first start (:attr:`started_at`, a
    ``trio.current_time()``); under ``MockClock`` the same plan (or the same seed for
    :meth:`random`) gives the same run. The plan keeps its schedule across restarts of
    its child: a restarted plan goes on where it was and never applies a fault twice.
    :attr:`applied` records ``(time, description)`` for each effect, ``time`` on the same
    base as the faults' times; :attr:`pending` lists the faults not (fully) applied yet.

    ``gate`` (keyword, optional) is called just before each fault would take effect;
    while it returns False nothing is applied: a due kill waits as if its target were
    not running, a message passes untouched (neither counts as applied). It lets the
    owner of the plan stop it at an exact instant, which cancelling the plan's child
    cannot: a kill due at that same instant may run first.

    Example::

        plan = FaultPlan([KillAt(1.0, "counter"), DropMessages("counter", kind="call")])
        await sup.start_child(plan.spec())
        stopped = trio.Event()
        gated = FaultPlan([KillAt(1.0, "counter")], gate=lambda: not stopped.is_set())
    """

    faults: Sequence[Fault]
    applied: list[tuple[float, str]] = field(default_factory=list)
    started_at: float | None = field(default=None, init=False)
    gate: Callable[[], bool] | None = field(default=None, kw_only=True, compare=False)
    _left: list[int] = field(default_factory=list, init=False, repr=False)
    _mailboxes: dict[int, Mailbox] = field(default_factory=dict, init=False, repr=False)
    _aim: tuple[str, ...] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.faults = tuple(self.faults)
        for fault in self.faults:
            if not isinstance(fault, KillAt | DelayMessages | DropMessages):
                raise TypeError(f"not a fault: {fault!r}")
            if isinstance(fault, KillAt):
                _check_seconds("KillAt.at", fault.at)
            else:
                _check_seconds(f"{type(fault).__name__}.start", fault.start)
                if isinstance(fault, DelayMessages):
                    _check_seconds("DelayMessages.delay", fault.delay)
                if fault.count < 1:
                    raise ValueError(f"{type(fault).__name__}.count must be >= 1")
                if fault.kind not in (ANY, CALL, CAST):
                    raise ValueError(f"{type(fault).__name__}.kind must be any/call/cast")
        self._left = [1 if isinstance(f, KillAt) else f.count for f in self.faults]

    @property
    def pending(self) -> list[Fault]:
        """The faults that have not (fully) taken effect yet."""
        return [f for f, left in zip(self.faults, self._left, strict=True) if left > 0]

    @classmethod
    def random(
        cls,
        seed: int,
        paths: Iterable[str],
        *,
        duration: float = 10.0,
        faults: int = 5,
        gate: Callable[[], bool] | None = None,
    ) -> FaultPlan:
        """A plan of ``faults`` faults over ``duration`` seconds, drawn from ``seed``
        (``gate``: as for the constructor).

        Kills may hit any of ``paths``; delays and drops only actors. Which paths are
        actors is known once the plan starts in its tree: a message fault drawn for a
        path that is not an actor (a supervisor, a plain worker) is then aimed at an
        actor among ``paths`` (the same one for the same seed and tree), or becomes a
        kill at its start time when none of ``paths`` is an actor. :attr:`faults` is
        final from the plan's first start.
        """
        rng = random.Random(seed)
        targets = sorted(paths)
        if not targets:
            raise ValueError("FaultPlan.random needs at least one path")
        plan: list[Fault] = []
        for _ in range(faults):
            path = rng.choice(targets)
            at = round(rng.uniform(0, duration), 3)
            pick = rng.random()
            if pick < 0.5:
                plan.append(KillAt(at, path))
            elif pick < 0.75:
                plan.append(
                    DelayMessages(path, round(rng.uniform(0.01, 1.0), 3), rng.randint(1, 3), at)
                )
            else:
                plan.append(
                    DropMessages(path, rng.randint(1, 2), at, rng.choice((ANY, CALL, CAST)))
                )
        made = cls(plan, gate=gate)
        made._aim = tuple(targets)
        return made

    def spec(self, id: str = "faults", **spec_options: Any) -> ChildSpec:
        """The child that executes the plan (not significant for readiness).

        It is ``TRANSIENT``: stopped with its siblings (a ``ONE_FOR_ALL`` restart) it
        comes back and goes on with its schedule; once done it just waits.
        """
        spec_options.setdefault("significant", False)
        spec_options.setdefault("kind", "chaos")
        spec_options.setdefault("restart", Restart.TRANSIENT)
        return ChildSpec(id, self.run, **spec_options)

    async def run(
        self, *, task_status: trio.TaskStatus[FaultPlan] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Install the message faults, then kill at the planned times."""
        registry = tree_registry()
        if self.started_at is None:
            self._resolve(registry)
            self.started_at = trio.current_time()
        t0 = self.started_at
        filters: dict[int, tuple[Mailbox, Callable[[int, Any], Any]]] = {}
        by_mailbox: dict[int, list[int]] = {}
        for index, mailbox in self._mailboxes.items():
            by_mailbox.setdefault(id(mailbox), []).append(index)
        for key, indexes in by_mailbox.items():
            mailbox = self._mailboxes[indexes[0]]
            message_filter = self._filter(indexes)
            mailbox.filter = message_filter
            filters[key] = (mailbox, message_filter)
        task_status.started(self)
        try:
            await self._kill_on_time(t0, registry)
            await trio.sleep_forever()
        finally:
            for mailbox, message_filter in filters.values():
                if mailbox.filter is message_filter:
                    mailbox.filter = None

    def _resolve(self, registry: Registry) -> None:
        """First start: find the targeted mailboxes (and aim a random plan's message
        faults at actors)."""

        def mailbox_of(path: str) -> Mailbox | None:
            child = registry.get(path)
            mailbox = child.spec.meta.get("mailbox") if child is not None else None
            return mailbox if isinstance(mailbox, Mailbox) else None

        if self._aim is not None:
            actors = [p for p in self._aim if mailbox_of(p) is not None]
            faults: list[Fault] = []
            for index, fault in enumerate(self.faults):
                if isinstance(fault, KillAt) or mailbox_of(fault.path) is not None:
                    faults.append(fault)
                elif actors:
                    faults.append(dataclasses.replace(fault, path=actors[index % len(actors)]))
                else:
                    faults.append(KillAt(fault.start, fault.path))
            self.faults = tuple(faults)
            self._left = [1 if isinstance(f, KillAt) else f.count for f in self.faults]
        for index, fault in enumerate(self.faults):
            # ChildNotFound for a path not in the tree, or an id that is not unique in it
            registry.lookup(fault.path)
            if isinstance(fault, KillAt):
                continue
            mailbox = mailbox_of(fault.path)
            if mailbox is None:
                raise ChildNotFound(f"fault plan: {fault.path!r} is not an actor")
            self._mailboxes[index] = mailbox

    async def _kill_on_time(self, t0: float, registry: Registry) -> None:
        """Apply each kill at its time; one whose target is not running then waits for
        its next incarnation without holding back the kills after it."""
        waiting = sorted(
            (f.at, i)
            for i, f in enumerate(self.faults)
            if isinstance(f, KillAt) and self._left[i] > 0
        )
        if not waiting:
            return
        started = trio.Event()

        def on_event(event: Event) -> None:
            if isinstance(event, ChildStarted):
                started.set()

        unsubscribe = tree_root().subscribe(on_event)
        try:
            while waiting:
                now = trio.current_time()
                # Due kills in plan order (time, then index): the same seed, the same run.
                for at, index in [(at, i) for at, i in waiting if t0 + at <= now]:
                    if self._try_kill(index, registry):
                        waiting.remove((at, index))
                later = [t0 + at for at, _ in waiting if t0 + at > now]
                if not waiting:
                    return
                # Until the next kill is due or a child starts (a waiting target's next
                # incarnation); every state change before this point was seen above.
                with trio.move_on_at(min(later, default=math.inf)):
                    await started.wait()
                started = trio.Event()
        finally:
            unsubscribe()

    def _open(self) -> bool:
        """Whether the gate lets a fault take effect now."""
        return self.gate is None or self.gate()

    def _try_kill(self, index: int, registry: Registry) -> bool:
        """Kill the target of fault ``index`` if it runs now (and the gate is open)."""
        fault = self.faults[index]
        assert isinstance(fault, KillAt)
        if not self._open():
            return False
        try:
            child = registry.get(fault.path)
        except ChildNotFound:  # ambiguous since the plan started: not a target now
            return False
        handle = child.handle if child is not None else None
        if (
            child is None
            or handle is None
            or child.state is not ChildState.RUNNING
            or not handle.inject(Killed(f"{fault.message}: {fault.path!r}"))
        ):
            return False
        self._record(f"kill {fault.path}")
        self._left[index] = 0
        return True

    def _record(self, text: str) -> None:
        assert self.started_at is not None
        self.applied.append((round(trio.current_time() - self.started_at, 9), text))

    def _filter(self, indexes: list[int]) -> Callable[[int, Any], Any]:
        faults = self.faults
        left = self._left
        assert self.started_at is not None
        t0 = self.started_at

        async def message_filter(kind: int, payload: Any) -> Any:
            now = trio.current_time()
            name = CALL if kind == 0 else CAST
            for index in indexes:
                fault = faults[index]
                assert isinstance(fault, DelayMessages | DropMessages)
                if left[index] <= 0 or now < t0 + fault.start or fault.kind not in (ANY, name):
                    continue
                if not self._open():  # checked per message: the gate may shut meanwhile
                    return payload
                left[index] -= 1
                if isinstance(fault, DropMessages):
                    self._record(f"drop {name} to {fault.path}")
                    return _DROP
                self._record(f"delay {name} to {fault.path} by {fault.delay:g}s")
                await trio.sleep(fault.delay)
            return payload

        return message_filter
