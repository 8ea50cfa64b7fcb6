"""The database's metric families (registered by every ``Metrics``)."""

from __future__ import annotations

from ..metrics import SLOW_BUCKETS, Family, declare

__all__ = ["FAMILIES"]

FAMILIES = declare(
    Family.gauge(
        "db_connections_active", "Active database connections (checked out of the pools)."
    ),
    Family.histogram(
        "db_query_duration",
        "db_query_duration_seconds",
        "Database query duration in seconds.",
        "operation",
        "table",
        buckets=SLOW_BUCKETS,
    ),
    Family.counter("db_query_errors", "Database queries that raised.", "operation", "table"),
    Family.gauge(
        "db_replica_healthy", "1 when the read replica is admitted, 0 when ejected.", "replica"
    ),
)
