"""The cache's metric families (registered by every ``Metrics``)."""

from __future__ import annotations

from ..metrics import FAST_BUCKETS, Family, declare

__all__ = ["FAMILIES"]

FAMILIES = declare(
    Family.counter("cache_hits", "Cache lookups that found the key.", "prefix"),
    Family.counter("cache_misses", "Cache lookups that did not find the key.", "prefix"),
    Family.histogram(
        "cache_operation_duration",
        "cache_operation_duration_seconds",
        "Cache operation duration in seconds.",
        "op",
        "prefix",
        buckets=FAST_BUCKETS,
    ),
)
