"""Exponential, capped, jittered restart delays."""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before the n-th consecutive restart of a child.

    The base delay is ``initial * multiplier**attempt`` capped at ``maximum``; jitter
    spreads it uniformly over ``base * (1 ± jitter)`` (never above ``maximum``). After a
    child has run for ``reset_after`` seconds without failing, its sequence starts over.

    Example::

        b = Backoff(initial=0.1, maximum=5.0, multiplier=2.0, jitter=0.2)
        b.base(3)            # 0.8
        b.delay(3, 0.5)      # 0.8: the middle of [0.64, 0.96]
    """

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    reset_after: float = 10.0

    def __post_init__(self) -> None:
        for name in ("initial", "maximum", "multiplier", "jitter", "reset_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"Backoff.{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Backoff.{name} must be a finite number >= 0, got {value!r}")
        if self.maximum < self.initial:
            raise ValueError(
                f"Backoff.maximum ({self.maximum!r}) must be >= Backoff.initial ({self.initial!r})"
            )
        if self.multiplier < 1:
            raise ValueError(f"Backoff.multiplier must be >= 1, got {self.multiplier!r}")
        if self.jitter > 1:
            raise ValueError(f"Backoff.jitter must be within [0, 1], got {self.jitter!r}")

    def base(self, attempt: int) -> float:
        """The un-jittered delay before restart number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt!r}")
        if self.initial == 0:
            return 0.0
        if self.multiplier > 1:
            # Cap the exponent before computing it so huge attempts cannot overflow.
            limit = math.log(self.maximum / self.initial, self.multiplier) + 1
            if attempt > limit:
                return self.maximum
        return min(self.maximum, self.initial * self.multiplier**attempt)

    def delay(self, attempt: int, u: float) -> float:
        """The jittered delay for ``attempt``, with ``u`` a uniform number in [0, 1)."""
        base = self.base(attempt)
        return min(self.maximum, max(0.0, base * (1.0 + self.jitter * (2.0 * u - 1.0))))

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay :meth:`delay` can return for ``attempt``."""
        base = self.base(attempt)
        return max(0.0, base * (1.0 - self.jitter)), min(self.maximum, base * (1.0 + self.jitter))


def jitter_draw(seed: int | None, key: str, attempt: int) -> float:
    """A uniform number in [0, 1): reproducible from ``(seed, key, attempt)`` when seeded.

    Deriving each draw from its own key (rather than from one shared generator) keeps a
    seeded run reproducible whatever order concurrent restarts are processed in.
    """
    if seed is None:
        return random.random()
    return random.Random(zlib.crc32(f"{seed}:{key}:{attempt}".encode())).random()
