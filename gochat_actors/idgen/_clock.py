"""Clock sources of the generator: a monotonic clock and a wall clock read once."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import trio

__all__ = ["IdClock", "SystemClock", "TrioIdClock"]


@runtime_checkable
class IdClock(Protocol):
    """Where the generator reads time: ``monotonic_ns`` for every deadline and the
    passing of milliseconds, ``wall_ns`` once, to place the monotonic clock on the
    Unix time line. Both return integer nanoseconds.

    Example::

        class Fixed:
            def monotonic_ns(self) -> int: return 0
            def wall_ns(self) -> int: return 1_700_000_000_000_000_000
    """

    def monotonic_ns(self) -> int:
        """Monotonic nanoseconds (read on every ID: keep it cheap)."""
        ...

    def wall_ns(self) -> int:
        """Unix time in nanoseconds (read once per generator)."""
        ...


class SystemClock:
    """The default: :func:`time.monotonic_ns` and :func:`time.time_ns`.

    Example::

        IdGenerator(settings, clock=SystemClock())
    """

    monotonic_ns = staticmethod(time.monotonic_ns)

    def wall_ns(self) -> int:
        """Unix time in nanoseconds."""
        return time.time_ns()


class TrioIdClock:
    """A clock on trio's clock (so ``autojump_clock`` drives it) with a wall clock you can
    step forwards and backwards, for tests.

    The monotonic part is ``trio.current_time()``; the wall part starts at ``wall_ms``
    and follows it, plus whatever :meth:`step` added.

    Example::

        clock = TrioIdClock(wall_ms=1_700_000_000_000)
        ids = IdGenerator(settings, clock=clock)
        clock.step(-30.0)   # an NTP step backwards: IDs still never go back
    """

    def __init__(self, wall_ms: int = 1_700_000_000_000) -> None:
        self._wall_offset_ns = wall_ms * 1_000_000 - self.monotonic_ns()

    @staticmethod
    def monotonic_ns() -> int:
        """``trio.current_time()`` in nanoseconds."""
        return round(trio.current_time() * 1e9)

    def wall_ns(self) -> int:
        """The stepped wall clock, in nanoseconds."""
        return self.monotonic_ns() + self._wall_offset_ns

    def step(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (negative: backwards)."""
        self._wall_offset_ns += round(seconds * 1e9)
