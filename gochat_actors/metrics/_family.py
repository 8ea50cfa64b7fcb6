"""Metric families, declared next to the code that feeds them and collected for ``Metrics``.

A component declares its families in its own ``_metrics.py`` (``db/_metrics.py``,
``cache/_metrics.py``...) with :func:`declare`; every :class:`~gochat_actors.metrics.Metrics`
registers what has been declared. The arrow runs down: components import this module,
``Metrics`` never imports a component (it sits below them, and they all use it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["FAST_BUCKETS", "SLOW_BUCKETS", "Family", "declare", "declared"]

Kind = Literal["counter", "gauge", "histogram"]

# Cache and lock operations are sub-millisecond to a few ms; DB and MQ are slower.
FAST_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
"""Histogram buckets (seconds) of operations that take well under a millisecond to a few."""

SLOW_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Histogram buckets (seconds) of operations that take milliseconds to seconds."""


@dataclass(frozen=True, slots=True)
class Family:
    """One family: its ``Metrics`` attribute, kind, name (without the namespace; the
    client adds ``_total`` to a counter's), help text, label names, histogram buckets,
    and the starting value of an unlabelled gauge.

    Example::

        Family("cache_hits", "counter", "Cache lookups that found the key.", ("prefix",))
    """

    attr: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    name: str = ""
    """The family name; empty: the same as ``attr``."""
    buckets: tuple[float, ...] = ()
    initial: float | None = None

    def __post_init__(self) -> None:
        if not self.attr.isidentifier():
            raise ValueError(f"{self.attr!r}: a family's attribute is a Python name")
        if self.kind not in _KINDS:
            raise ValueError(f"{self.attr}: a family is a counter, a gauge or a histogram")
        if not self.name:
            object.__setattr__(self, "name", self.attr)
        if not _NAME.fullmatch(self.name) or not all(map(_LABEL.fullmatch, self.labels)):
            raise ValueError(
                f"{self.attr}: a family's name is [a-zA-Z_:][a-zA-Z0-9_:]*, its labels"
                f" [a-zA-Z_][a-zA-Z0-9_]* (name {self.name!r}, labels {self.labels!r}):"
                " the text format would escape the others"
            )
        if (self.kind == "histogram") != bool(self.buckets):
            raise ValueError(f"{self.attr}: buckets are for histograms, and they need them")
        if self.initial is not None and (self.kind != "gauge" or self.labels):
            raise ValueError(f"{self.attr}: only an unlabelled gauge has a starting value")

    @classmethod
    def counter(cls, attr: str, help: str, *labels: str) -> Family:
        """A counter: ``Family.counter("cache_hits", "Cache lookups that hit.", "prefix")``."""
        return cls(attr, "counter", help, labels)

    @classmethod
    def gauge(cls, attr: str, help: str, *labels: str, initial: float | None = None) -> Family:
        """A gauge: ``Family.gauge("mq_lag", "Consumer lag.", "topic", "partition")``."""
        return cls(attr, "gauge", help, labels, initial=initial)

    @classmethod
    def histogram(
        cls, attr: str, name: str, help: str, *labels: str, buckets: tuple[float, ...]
    ) -> Family:
        """A histogram named ``name`` (its unit included), at ``Metrics.<attr>``.

        Example::

            Family.histogram("mq_processing_duration", "mq_processing_seconds",
                             "Time to process one consumed message.", "topic",
                             buckets=SLOW_BUCKETS)
        """
        return cls(attr, "histogram", help, labels, name, buckets)


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

_KINDS: dict[str, type[Any]] = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}

_DECLARED: dict[str, Family] = {}


def declare(*families: Family) -> tuple[Family, ...]:
    """Add ``families`` to what every ``Metrics`` registers; returns them.

    Declaring the same family again changes nothing; another family under a name or
    attribute already taken, or one the client would refuse to register beside the
    declared ones, is a ``ValueError`` (and none of ``families`` is declared).

    Example::

        FAMILIES = declare(Family.counter("lock_acquired", "Locks acquired.", "prefix"))
    """
    accepted = dict(_DECLARED)
    for family in families:
        if family.attr in _RESERVED:
            raise ValueError(
                f"metric family {family.attr!r}: the name of an attribute of Metrics itself"
            )
        taken = accepted.get(family.attr) or next(
            (f for f in accepted.values() if f.name == family.name), None
        )
        if taken is not None and taken != family:
            raise ValueError(f"metric family {family.attr!r} clashes with {taken}")
        accepted[family.attr] = family
    _registrable(accepted.values())
    _DECLARED.update(accepted)
    return families


_RESERVED: set[str] = set()


def reserve(names: Iterable[str]) -> None:
    """Attribute names no family may take (``Metrics``' own: ``render``, ``registry``...).

    Example::

        reserve({"registry", "render"})
    """
    _RESERVED.update(names)


def _registrable(families: Iterable[Family]) -> None:
    """Register ``families`` in a scratch registry, as ``Metrics`` will: what the client
    refuses (a reserved label, unsorted buckets, a name that is another family's sample,
    ``x_total`` beside the counter ``x``) is refused when declared, not by every
    ``Metrics`` made afterwards."""
    scratch = CollectorRegistry(auto_describe=True)
    for family in families:
        extra = {"buckets": family.buckets} if family.kind == "histogram" else {}
        try:
            _KINDS[family.kind](
                family.name,
                family.help,
                family.labels,
                namespace="gochat",
                registry=scratch,
                **extra,
            )
        except ValueError as error:
            raise ValueError(
                f"metric family {family.attr!r} cannot be registered: {error}"
            ) from None


def declared() -> dict[str, Family]:
    """Every declared family by attribute, in the order they were declared."""
    return dict(_DECLARED)
