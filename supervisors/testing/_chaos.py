"""ChaosMonkey: a child that kills random children of its own tree, from a seed."""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable, Sequence
from typing import Any

import trio

from .._child import ChildState, current_child
from .._exceptions import Killed
from .._registry import current_registry
from .._spec import ChildSpec

__all__ = ["ChaosMonkey"]


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


class ChaosMonkey:
    """Kills a random running child of its tree about ``rate`` times a second.

    Intervals are exponential and the victims are drawn from ``random.Random(seed)``,
    so under a ``MockClock`` the same seed replays the same kills. ``include`` and
    ``exclude`` are glob patterns on child paths (``"db/*"``); the monkey never kills
    itself. :attr:`kills` lists ``(time, path)`` of every kill.

    Example::

        monkey = ChaosMonkey(rate=2.0, seed=7, exclude=["http"])
        await sup.start_child(monkey.spec())
    """

    def __init__(
        self,
        rate: float,
        *,
        seed: int | None = None,
        include: Sequence[str] = ("*",),
        exclude: Sequence[str] = (),
        exception: Callable[[str], BaseException] | None = None,
        max_kills: int | None = None,
    ) -> None:
        if not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0:
            raise ValueError(
                f"ChaosMonkey rate must be a number > 0 (kills per second), got {rate!r}"
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

    def spec(self, id: str = "chaos", **spec_options: Any) -> ChildSpec:
        """The child that runs the monkey (not significant for readiness)."""
        spec_options.setdefault("significant", False)
        spec_options.setdefault("kind", "chaos")
        return ChildSpec(id, self.run, **spec_options)

    def candidates(self, own_path: str) -> list[str]:
        """The paths the monkey may kill right now, sorted."""
        registry = current_registry()
        found = []
        for path in registry.paths():
            if path == own_path or path.startswith(own_path + "/"):
                continue
            if not _matches(path, self.include) or _matches(path, self.exclude):
                continue
            child = registry.get(path)
            if child is None or child.state is not ChildState.RUNNING:
                continue
            if child.handle is None or child.handle.finished or child.handle.stopping:
                continue
            found.append(path)
        return sorted(found)

    async def run(
        self, *, task_status: trio.TaskStatus[ChaosMonkey] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Kill children until stopped (or until ``max_kills``)."""
        rng = random.Random(self.seed)
        own_path = current_child().path
        task_status.started(self)
        while self.max_kills is None or len(self.kills) < self.max_kills:
            await trio.sleep(rng.expovariate(self.rate))
            choices = self.candidates(own_path)
            if not choices:
                continue
            path = rng.choice(choices)
            child = current_registry().get(path)
            handle = child.handle if child is not None else None
            if handle is not None and handle.inject(self.exception(path)):
                self.kills.append((trio.current_time(), path))
        await trio.sleep_forever()
