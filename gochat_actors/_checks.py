"""Argument checks shared by the components, and what Redis accepts, checked the same way
by every backend (no driver imported): TTLs in milliseconds below Redis' limit, keys that
are valid UTF-8 text, integers as ``INCRBY`` reads them. The in-memory backends stand in
for Redis in tests, so they refuse what Redis refuses, with the same errors."""

from __future__ import annotations

import math
import re
import time

from ._exceptions import CacheError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "check_amount",
    "check_key_text",
    "check_seconds",
    "incr_value",
    "redis_int",
    "ttl_ms",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_INTEGER = re.compile(rb"0|-?[1-9][0-9]{0,18}")  # Redis' string2ll: no sign, space, _


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a finite number of seconds (> 0, or >= 0), else a ``TypeError``/``ValueError``
    naming ``name``.

    Example::

        ttl = check_seconds("ttl", ttl)
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


def ttl_ms(ttl: float) -> int:
    """A TTL in seconds as Redis milliseconds, rounded up, at least 1; ``ValueError``
    past what Redis accepts (the expiry must fit in a signed 64-bit Unix millisecond,
    about 292 million years from now).

    Example::

        >>> ttl_ms(0.0001), ttl_ms(2.5)
        (1, 2500)
    """
    ms = max(1, math.ceil(ttl * 1000))
    if ms > INT64_MAX - time.time_ns() // 1_000_000:
        raise ValueError(f"ttl {ttl!r}s is beyond what Redis accepts (an expiry past 2**63 ms)")
    return ms


def check_key_text(key: str) -> str:
    """``key``, or ``ValueError`` when it is not valid UTF-8 text (a lone surrogate such
    as ``"\\ud800"``): Redis keys are bytes, and such a str has no UTF-8 form.

    Example::

        check_key_text("user:42")
    """
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"cache key {key!r} is not valid UTF-8 text: {exc.reason} at {exc.start}"
            ) from None
    return key


def redis_int(raw: bytes) -> int | None:
    """``raw`` as Redis reads an integer (``0`` or ``-?[1-9][0-9]*`` within 64 bits),
    else None.

    Example::

        >>> redis_int(b"-42"), redis_int(b"+5"), redis_int(b"007")
        (-42, None, None)
    """
    if not _INTEGER.fullmatch(raw):
        return None
    value = int(raw)
    return value if INT64_MIN <= value <= INT64_MAX else None


def check_amount(amount: int) -> int:
    """``amount`` for ``INCRBY``, or ``ValueError`` outside a signed 64-bit integer.

    Example::

        check_amount(10)
    """
    if not INT64_MIN <= amount <= INT64_MAX:
        raise ValueError(f"amount must fit in a signed 64-bit integer, got {amount}")
    return amount


def incr_value(key: str, raw: bytes | None, amount: int) -> int:
    """The value ``INCRBY key amount`` makes of ``raw`` (None: absent), or the
    :class:`~gochat_actors.CacheError` Redis answers.

    Example::

        >>> incr_value("n", b"41", 1)
        42
    """
    value = 0 if raw is None else redis_int(raw)
    if value is None or not INT64_MIN <= amount <= INT64_MAX:
        raise CacheError(f"INCRBY {key!r}: value is not an integer or out of range")
    value += amount
    if not INT64_MIN <= value <= INT64_MAX:
        raise CacheError(f"INCRBY {key!r}: increment or decrement would overflow")
    return value
