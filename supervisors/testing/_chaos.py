"""ChaosMonkey: a child that kills random children of its own tree, from a seed."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import trio

from .._child import ChildState, current_child
from .._exceptions import Killed
from .._spec import ChildSpec
from ._tree import matches, tree_registry

__all__ = ["ChaosMonkey"]


class ChaosMonkey:
    """Kills a random running child of its tree about ``rate`` times a second.

    Intervals are exponential and the victims are drawn from ``random.Random(seed)``,
    so under a ``MockClock`` the same seed replays the same kills. The stream belongs to
    the monkey, not to one incarnation: a restarted monkey goes on with its next draw
    and its next kill time (make a new ``ChaosMonkey`` to replay from the start).

    ``include`` and ``exclude`` are globs on child paths: ``*`` and ``?`` stay within
    one level (``"db/*"`` is db's children), ``**`` crosses levels (the default
    ``include`` is ``("**",)``: everything). An ``exclude`` also covers the subtree:
    ``exclude=["db"]`` protects db and all below it. The monkey never kills itself, its
    own supervisors (that would kill it too) or a chaos child (``kind="chaos"``: other
    monkeys, fault plans). :attr:`kills` lists ``(time, path)`` of every kill, ``time``
    being ``trio.current_time()``.

    Example::

        monkey = ChaosMonkey(rate=2.0, seed=7, exclude=["http"])
        await sup.start_child(monkey.spec())
    """

    def __init__(
        self,
        rate: float,
        *,
        seed: int | None = None,
        include: Sequence[str] = ("**",),
        exclude: Sequence[str] = (),
        exception: Callable[[str], Exception] | None = None,
        max_kills: int | None = None,
    ) -> None:
        if (
            not isinstance(rate, int | float)
            or isinstance(rate, bool)
            or not math.isfinite(rate)  # NaN would crash the monkey, inf spin it at once
            or rate <= 0
        ):
            raise ValueError(
                f"ChaosMonkey rate must be a finite number > 0 (kills per second), got {rate!r}"
            )
        if isinstance(include, str) or isinstance(exclude, str):
            raise TypeError("ChaosMonkey include/exclude must be sequences of glob patterns")
        self.rate = float(rate)
        self.seed = seed
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.exception = exception or (lambda path: Killed(f"chaos monkey killed {path!r}"))
        self.max_kills = max_kills
        self.kills: list[tuple[float, str]] = []
        self._rng = random.Random(seed)
        self._next_at: float | None = None  # the drawn time of the next kill

    def spec(self, id: str = "chaos", **spec_options: Any) -> ChildSpec:
        """The child that runs the monkey (not significant for readiness)."""
        spec_options.setdefault("significant", False)
        spec_options.setdefault("kind", "chaos")
        return ChildSpec(id, self.run, **spec_options)

    def candidates(self, own_path: str) -> list[str]:
        """The paths the monkey may kill right now, sorted."""
        registry = tree_registry()
        found = []
        for path in registry.paths():
            if path == own_path or path.startswith(own_path + "/"):
                continue  # itself (and anything it might run)
            if own_path.startswith(path + "/"):
                continue  # its own supervisors: killing one kills the monkey
            if not matches(path, self.include) or matches(path, self.exclude, subtree=True):
                continue
            child = registry.get(path)
            if child is None or child.state is not ChildState.RUNNING:
                continue
            if child.spec.kind == "chaos":
                continue
            if child.handle is None or child.handle.finished or child.handle.stopping:
                continue
            found.append(path)
        return sorted(found)

    async def run(
        self, *, task_status: trio.TaskStatus[ChaosMonkey] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Kill children until stopped (or until ``max_kills``)."""
        rng = self._rng
        own_path = current_child().path
        registry = tree_registry()
        task_status.started(self)
        while self.max_kills is None or len(self.kills) < self.max_kills:
            if self._next_at is None:
                # Drawn at once after the previous kill, before anything can stop the
                # monkey, so the timeline does not depend on when it is restarted.
                self._next_at = trio.current_time() + rng.expovariate(self.rate)
            await trio.sleep_until(self._next_at)
            self._next_at = None
            choices = self.candidates(own_path)
            if not choices:
                continue
            path = rng.choice(choices)
            child = registry.get(path)
            handle = child.handle if child is not None else None
            exc = self.exception(path)
            if not isinstance(exc, Exception):
                raise TypeError(
                    f"ChaosMonkey exception factory must return an Exception, got {exc!r}"
                )
            if handle is not None and handle.inject(exc):
                self.kills.append((trio.current_time(), path))
        await trio.sleep_forever()
