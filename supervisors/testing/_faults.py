"""Fault plans: kills at virtual times, delayed and dropped mailbox messages."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from .._actor import _DROP, Mailbox
from .._exceptions import ChildNotFound, Killed
from .._registry import current_registry
from .._spec import ChildSpec

__all__ = ["DelayMessages", "DropMessages", "FaultPlan", "KillAt"]

ANY, CALL, CAST = "any", "call", "cast"


@dataclass(frozen=True, slots=True)
class KillAt:
    """Kill the child at ``path`` ``at`` seconds after the plan starts."""

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
    plan). Dropping a ``call`` makes its caller time out (``kind="call"``)."""

    path: str
    count: int = 1
    start: float = 0.0
    kind: str = ANY


Fault = KillAt | DelayMessages | DropMessages


@dataclass
class _Active:
    fault: DelayMessages | DropMessages
    remaining: int
    start: float


@dataclass
class FaultPlan:
    """A replayable list of faults, run as a child of the tree it targets.

    Times are virtual seconds from the plan's start; under ``MockClock`` the same plan
    (or the same seed for :meth:`random`) gives the same run. :attr:`applied` records
    ``(time, description)`` for each fault that took effect.

    Example::

        plan = FaultPlan([KillAt(1.0, "counter"), DropMessages("counter", kind="call")])
        await sup.start_child(plan.spec())
    """

    faults: Sequence[Fault]
    applied: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.faults = tuple(self.faults)
        for fault in self.faults:
            if not isinstance(fault, KillAt | DelayMessages | DropMessages):
                raise TypeError(f"not a fault: {fault!r}")
            if isinstance(fault, KillAt) and fault.at < 0:
                raise ValueError(f"KillAt.at must be >= 0, got {fault.at!r}")
            if isinstance(fault, DelayMessages | DropMessages):
                if fault.count < 1:
                    raise ValueError(f"{type(fault).__name__}.count must be >= 1")
                if fault.kind not in (ANY, CALL, CAST):
                    raise ValueError(f"{type(fault).__name__}.kind must be any/call/cast")

    @classmethod
    def random(
        cls, seed: int, paths: Iterable[str], *, duration: float = 10.0, faults: int = 5
    ) -> FaultPlan:
        """A plan of ``faults`` faults over ``duration`` seconds, drawn from ``seed``."""
        rng = random.Random(seed)
        targets = sorted(paths)
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
        return cls(plan)

    def spec(self, id: str = "faults", **spec_options: Any) -> ChildSpec:
        """The child that executes the plan (not significant, never restarted)."""
        from .._spec import Restart

        spec_options.setdefault("significant", False)
        spec_options.setdefault("kind", "chaos")
        spec_options.setdefault("restart", Restart.TEMPORARY)
        return ChildSpec(id, self.run, **spec_options)

    async def run(
        self, *, task_status: trio.TaskStatus[FaultPlan] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Install the message faults, then kill at the planned times."""
        t0 = trio.current_time()
        registry = current_registry()
        by_mailbox: dict[int, tuple[Mailbox, list[_Active]]] = {}
        for fault in self.faults:
            if isinstance(fault, KillAt):
                continue
            mailbox = registry.lookup(fault.path).spec.meta.get("mailbox")
            if not isinstance(mailbox, Mailbox):
                raise ChildNotFound(f"fault plan: {fault.path!r} is not an actor")
            entry = by_mailbox.setdefault(id(mailbox), (mailbox, []))
            entry[1].append(_Active(fault, fault.count, t0 + fault.start))
        for mailbox, active in by_mailbox.values():
            mailbox.filter = self._filter(active)
        task_status.started(self)
        try:
            for fault in sorted(
                (f for f in self.faults if isinstance(f, KillAt)), key=lambda f: f.at
            ):
                await trio.sleep_until(t0 + fault.at)
                target = registry.get(fault.path)
                handle = target.handle if target is not None else None
                if handle is not None and handle.inject(Killed(f"{fault.message}: {fault.path!r}")):
                    self.applied.append((trio.current_time() - t0, f"kill {fault.path}"))
            await trio.sleep_forever()
        finally:
            for mailbox, _ in by_mailbox.values():
                mailbox.filter = None

    def _filter(self, active: list[_Active]) -> Any:
        applied = self.applied

        async def message_filter(kind: int, payload: Any) -> Any:
            now = trio.current_time()
            name = CALL if kind == 0 else CAST
            for entry in active:
                fault = entry.fault
                if entry.remaining <= 0 or now < entry.start or fault.kind not in (ANY, name):
                    continue
                entry.remaining -= 1
                if isinstance(fault, DropMessages):
                    applied.append((now, f"drop {name} to {fault.path}"))
                    return _DROP
                applied.append((now, f"delay {name} to {fault.path} by {fault.delay:g}s"))
                await trio.sleep(fault.delay)
            return payload

        return message_filter
