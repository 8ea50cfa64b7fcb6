"""``Metrics``: every ``gochat_*`` Prometheus family, in a registry of its own."""

from __future__ import annotations

import re
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Any, get_type_hints

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.values import MutexValue

from ._family import Family, declared, reserve

__all__ = ["CONTENT_TYPE", "OTHER_PREFIX", "Metrics", "key_prefix", "observe_many"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The ``Content-Type`` of :meth:`Metrics.render`'s output (text format 0.0.4, which every
Prometheus server reads; the ``gochat_*`` names need no newer escaping)."""

OTHER_PREFIX = "_other"
"""The label value of keys without a usable prefix."""

FOLD_AT = 1024
"""Timings (from the ``time_*`` helpers) a :class:`Metrics` holds before it folds them
into their histograms; any collection of a histogram (a scrape, :meth:`Metrics.render`)
folds what is held first."""

_PREFIX = re.compile(r"^[A-Za-z0-9_.\-]{1,48}$")


def key_prefix(key: str | bytes) -> str:
    """The bounded label value of a cache/lock key: the part before the first ``:``.

    Keys without ``:``, with an empty or odd-looking prefix (not ``[A-Za-z0-9_.-]{1,48}``)
    all count as ``"_other"``: a label never holds a whole key, so series stay bounded.

    Example::

        >>> key_prefix("user:42:profile"), key_prefix("session42"), key_prefix(":x")
        ('user', '_other', '_other')
    """
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    prefix, sep, _ = key.partition(":")
    if not sep or not _PREFIX.match(prefix):
        return OTHER_PREFIX
    return prefix


class Metrics:
    """The library's Prometheus metrics, registered in ``registry`` (a new one by default).

    Never the global default registry: build as many as you like (one per test).
    Attributes are named after their family without the namespace and the
    ``_total``/``_seconds`` suffix (``metrics.cache_hits`` is ``gochat_cache_hits_total``).
    Label cache/lock keys with :func:`key_prefix` (the helpers below do it for you).
    Timings from the ``time_*`` helpers are held and folded into their histograms in
    batches (every 1024, and before any read of a histogram family, such as a scrape or
    :meth:`render`): a scrape sees every timing taken before it.

    Example::

        metrics = Metrics()
        metrics.record_cache_lookup("user:42", hit=True)
        with metrics.time_db_query("select", "messages"):
            ...
        body = metrics.render()   # Prometheus text format, CONTENT_TYPE

    The families are declared next to the code that feeds them (``db/_metrics.py``,
    ``cache/_metrics.py``, ``lock/_metrics.py``, ``mq/_metrics.py``,
    ``idgen/_metrics.py``, and the runtime's in ``metrics/_runtime.py``): ``Metrics``
    registers every declared family. Below, only their attributes and types.
    """

    # db
    db_connections_active: Gauge
    db_query_duration: Histogram
    db_query_errors: Counter
    db_replica_healthy: Gauge
    # cache
    cache_hits: Counter
    cache_misses: Counter
    cache_operation_duration: Histogram
    # lock
    lock_acquired: Counter
    lock_lost: Counter
    lock_acquire_duration: Histogram
    # mq
    mq_messages_produced: Counter
    mq_messages_consumed: Counter
    mq_processing_duration: Histogram
    mq_retries: Counter
    mq_dead_lettered: Counter
    mq_lag: Gauge
    # idgen
    idgen_issued: Counter
    idgen_next_millisecond_waits: Counter
    idgen_renewals: Counter
    idgen_renewal_failures: Counter
    idgen_machine_id: Gauge
    # runtime (RuntimeMetrics)
    actor_restarts: Counter
    actor_mailbox_depth: Gauge
    supervisor_children: Gauge

    def __init__(
        self, registry: CollectorRegistry | None = None, *, namespace: str = "gochat"
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.namespace = namespace
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._db_series: dict[tuple[str, str], tuple[Any, Any]] = {}  # time_db_query's
        self._timings = _Timings()
        families = declared()
        for attr in (*_TYPED, *(attr for attr in families if attr not in _TYPED)):
            if attr not in _TYPED and hasattr(self, attr):
                raise ValueError(f"Metrics: a family cannot be named {attr!r}: it is taken")
            setattr(self, attr, self._register(_checked(families, attr)))

    def _register(self, family: Family) -> Any:
        where: dict[str, Any] = {"namespace": self.namespace, "registry": self.registry}
        if family.kind == "histogram":  # folds the pending timings before a scrape
            return self._timings.histogram(
                family.name, family.help, family.labels, buckets=family.buckets, **where
            )
        metric = _CLASSES[family.kind](family.name, family.help, family.labels, **where)
        if family.initial is not None:
            metric.set(family.initial)
        return metric

    # -- helpers that bound the labels --------------------------------------------
    def record_cache_lookup(self, key: str | bytes, *, hit: bool) -> None:
        """Count a cache hit or miss under ``key_prefix(key)``.

        Example::

            metrics.record_cache_lookup("user:42", hit=value is not None)
        """
        counter = self.cache_hits if hit else self.cache_misses
        counter.labels(prefix=key_prefix(key)).inc()

    def time_cache_op(self, op: str, key: str | bytes) -> _Timer:
        """Observe the duration of one cache operation (``op`` is a fixed name: get, set...).

        Example::

            with metrics.time_cache_op("get", key):
                value = await client.get(key)
        """
        return _Timer(
            self._timings, self._series(self.cache_operation_duration, op, key_prefix(key))
        )

    def time_db_query(self, operation: str, table: str) -> _Timer:
        """Observe a query's duration; count it in ``db_query_errors`` if it raises.

        Example::

            with metrics.time_db_query("insert", "messages"):
                await conn.execute(stmt)
        """
        series = self._db_series.get((operation, table))
        if series is None:  # one lookup per query, not one per family
            series = self._db_series[operation, table] = (
                self._series(self.db_query_duration, operation, table),
                self._series(self.db_query_errors, operation, table),
            )
        return _Timer(self._timings, *series)

    def time_mq_processing(self, topic: str) -> _Timer:
        """Observe the processing time of one consumed message.

        Example::

            with metrics.time_mq_processing(msg.topic):
                await handler(msg)
        """
        return _Timer(self._timings, self._series(self.mq_processing_duration, topic))

    def _series(self, family: Any, *values: str) -> Any:
        """``family.labels(*values)``, remembered: ``labels()`` validates and locks on
        every call, a few microseconds on a path taken per query or per message."""
        key = (id(family), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*values)
        return child

    # -- exposition ----------------------------------------------------------------
    content_type = CONTENT_TYPE
    """The ``Content-Type`` of :meth:`render`'s output."""

    def render(self) -> bytes:
        """Every family in the Prometheus text exposition format.

        Example::

            body, content_type = metrics.render(), metrics.content_type
        """
        return generate_latest(self.registry)

    def __repr__(self) -> str:
        return f"<Metrics namespace={self.namespace!r}>"


_CLASSES: dict[str, type[Any]] = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}

_TYPED: dict[str, type[Any]] = {
    attr: hint for attr, hint in get_type_hints(Metrics).items() if hint in _CLASSES.values()
}
"""The family attributes of :class:`Metrics`, in the order they render, with their types."""


# A family named like Metrics' own attributes would make every Metrics() fail: refused
# when declared instead.
reserve(
    {name for name in vars(Metrics) if not name.startswith("_")} | {"registry", "namespace"}
)


def _checked(families: dict[str, Family], attr: str) -> Family:
    """The family declared for ``attr``, of the type its attribute promises."""
    family = families.get(attr)
    if family is None:
        raise RuntimeError(
            f"Metrics: no family declared for {attr!r} yet (a component's _metrics.py"
            " declares it when the component is imported: is gochat_actors still importing?)"
        )
    typed = _TYPED.get(attr)
    if typed is not None and typed is not _CLASSES[family.kind]:
        raise TypeError(f"Metrics.{attr} is a {typed.__name__}, declared a {family.kind}")
    return family


def observe_many(histogram: Any, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for each value, in one pass: the values are counted per
    bucket first, then each touched bucket (and the sum) is updated once. For a hot path
    that times many small things (a consumer's messages) and records them per batch.
    Counts exactly as ``observe`` does, NaN included (in the sum, in no bucket), and
    adds to the sum value by value, as ``observe`` does (float rounding depends on it).

    Example::

        observe_many(metrics.mq_processing_duration.labels(topic="chat"), [0.001, 0.002])
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:  # not a prometheus_client histogram child as we know it
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    whole = sum(values)  # NaN when a value is NaN (or both infinities are there)
    if whole == whole:
        # Sorted once (in C), then a bound's count is where it falls among the values:
        # values <= bound, as observe() (a value in the first bucket whose bound is
        # >= it); a few bisections per call instead of one per value.
        ordered = sorted(values)
        below = 0
        for i, bound in enumerate(bounds):
            upto = bisect_right(ordered, bound, below)
            counts[i] = upto - below
            below = upto
    else:
        for value in values:
            if value == value:  # NaN (never equal to itself) lands in no bucket, as observe()
                counts[bisect_left(bounds, value)] += 1  # the first bound >= value
    _add_one_by_one(total, values)
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)


def _add_one_by_one(total: Any, values: Sequence[float]) -> None:
    # Not total.inc(sum(values)): (s + a) + b rounds differently from s + (a + b), and
    # sum() compensates its rounding from Python 3.12 on. One lock, as inc() takes it.
    if type(total) is MutexValue:
        with total._lock:
            value = total._value
            for amount in values:
                value += amount
            total._value = value
    else:  # another value class (multiprocess mode): its own inc(), value by value
        for amount in values:
            total.inc(amount)


class _Timings:
    """Timings waiting to be folded into their histograms, :data:`FOLD_AT` at a time or
    when a histogram family of the same :class:`Metrics` is collected.

    A timing is then one append on a hot path (a query, a cache operation) where a
    histogram's ``observe`` takes two locks and a walk of the buckets (a fifth of a
    database crossing's CPU); a scrape still sees every timing taken before it.
    Thread-safe: a deque, drained by whoever folds.

    Example::

        timings = _Timings()
        timings.add(metrics.db_query_duration.labels("select", "users"), 0.002)
        timings.fold()
    """

    __slots__ = ("_items", "histogram")

    def __init__(self) -> None:
        self._items: deque[tuple[Any, float]] = deque()
        timings = self

        class FoldingHistogram(Histogram):
            """A histogram family that folds the pending timings before it is read."""

            def collect(self) -> Any:
                timings.fold()
                return super().collect()

        self.histogram = FoldingHistogram

    def add(self, histogram: Any, value: float) -> None:
        items = self._items
        items.append((histogram, value))
        if len(items) >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        items, by_series = self._items, dict[Any, list[float]]()
        while True:
            try:
                histogram, value = items.popleft()
            except IndexError:
                break
            by_series.setdefault(histogram, []).append(value)
        for histogram, values in by_series.items():
            observe_many(histogram, values)


class _Timer:
    """``with`` block timing into a histogram series (folded in later, see
    :class:`_Timings`); counts an ``Exception`` leaving the block in ``errors`` (if given)
    at once. Reusable, not reentrant.

    Example::

        with metrics.time_db_query("select", "users"):
            ...
    """

    __slots__ = ("_errors", "_histogram", "_start", "_timings")

    def __init__(self, timings: _Timings, histogram: Any, errors: Any = None) -> None:
        self._timings, self._histogram, self._errors = timings, histogram, errors
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._errors is not None and isinstance(exc, Exception):
            self._errors.inc()
        self._timings.add(self._histogram, time.perf_counter() - self._start)
