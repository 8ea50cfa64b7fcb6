"""The locks' metric families (registered by every ``Metrics``)."""

from __future__ import annotations

from ..metrics import SLOW_BUCKETS, Family, declare

__all__ = ["FAMILIES"]

FAMILIES = declare(
    Family.counter("lock_acquired", "Locks acquired.", "prefix"),
    Family.counter(
        "lock_lost", "Locks lost while held (renewal failed or ownership gone).", "prefix"
    ),
    Family.histogram(
        "lock_acquire_duration",
        "lock_acquire_duration_seconds",
        "Time to acquire a lock, waiting included.",
        "prefix",
        buckets=SLOW_BUCKETS,
    ),
)
