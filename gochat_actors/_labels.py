"""Bounded ``prefix`` label values for the cache's and the locks' metrics."""

from __future__ import annotations

from collections.abc import Iterable

from .metrics import OTHER_PREFIX, key_prefix

__all__ = ["MAX_METRIC_PREFIXES", "PrefixLabels"]

MAX_METRIC_PREFIXES = 64
"""Distinct prefixes that get their own series by default; later ones count as ``_other``."""


class PrefixLabels:
    """The label value of a key: its prefix (the part before the first ``:``, see
    :func:`~gochat_actors.metrics.key_prefix`), bounded.

    With ``allow``, only those prefixes are labels. Otherwise the first ``limit``
    distinct prefixes seen are; an all-digit prefix (an ID, as in ``f"{user_id}:x"``)
    never is. Everything else counts as ``_other``, so a process never makes more than
    ``limit + 1`` series per metric, whatever its keys.

    Example::

        >>> labels = PrefixLabels(limit=2)
        >>> [labels(k) for k in ("user:1", "42:x", "room:9", "job:3", "user:2")]
        ['user', '_other', 'room', '_other', 'user']
    """

    __slots__ = ("_allow", "_known", "_limit")

    def __init__(self, allow: Iterable[str] | None = None, *, limit: int = MAX_METRIC_PREFIXES):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"max_metric_prefixes must be an int >= 0, got {limit!r}")
        if isinstance(allow, str):
            raise TypeError("metric_prefixes takes a collection of prefixes, not one str")
        self._allow = None if allow is None else frozenset(allow)
        self._limit = limit
        self._known: dict[str, str] = {}  # at most `limit` entries

    def __call__(self, key: str) -> str:
        prefix = key_prefix(key)
        label = self._known.get(prefix)
        if label is not None:
            return label
        if self._allow is not None:
            return prefix if prefix in self._allow else OTHER_PREFIX
        if prefix.isdigit() or len(self._known) >= self._limit:
            return OTHER_PREFIX
        self._known[prefix] = prefix
        return prefix
