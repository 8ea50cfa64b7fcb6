"""The conformance suite every :class:`~gochat_actors.cache.CacheBackend` passes.

Each check is ``async def check_x(backend) -> None`` and raises ``AssertionError``; each
uses its own keys (``conformance:<check>:...``), so checks may share a key space.
Lifetimes are checked both ways: a key expires once its TTL has passed (upper bound)
and is still there shortly before (lower bound: a backend that keeps keys for half the
TTL fails). Timing checks wait on the trio clock (about a second on a real server, no
time at all under ``autojump_clock``).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

import trio

from .._exceptions import CacheError, CacheUnavailable
from ..cache import CacheBackend, CacheConnector

__all__ = ["CACHE_CHECKS", "check_cache_backend", "eventually", "run_checks"]

B = TypeVar("B")

_K = "conformance:"


async def eventually(predicate: Callable[[], Awaitable[bool]], *, timeout: float = 5.0) -> None:
    """Wait until ``await predicate()`` is true, polling; ``AssertionError`` after ``timeout``.

    Example::

        await eventually(lambda: is_absent(backend, "k"))
    """
    with trio.move_on_after(timeout):
        while True:  # polling is the point: the condition is on a server
            if await predicate():
                return
            await trio.sleep(0.01)
    raise AssertionError(f"condition still false after {timeout:g}s")


async def check_get_absent(backend: CacheBackend) -> None:
    """An absent key reads as None (not an error)."""
    assert await backend.get(_K + "absent:x") is None


async def check_set_then_get(backend: CacheBackend) -> None:
    """Any bytes round-trip exactly, and a second set overwrites."""
    key = _K + "roundtrip:x"
    value = bytes(range(256)) + b"\x00\xff tail"
    assert await backend.set(key, value) is True
    assert await backend.get(key) == value
    assert await backend.set(key, b"") is True
    assert await backend.get(key) == b""
    await backend.delete([key])


async def check_large_value(backend: CacheBackend) -> None:
    """A 1 MiB value round-trips."""
    key = _K + "large:x"
    value = bytes(range(256)) * 4096
    await backend.set(key, value, 30.0)
    assert await backend.get(key) == value
    await backend.delete([key])


async def check_set_nx(backend: CacheBackend) -> None:
    """``nx=True`` stores only when the key is absent."""
    key = _K + "nx:x"
    assert await backend.set(key, b"first", 30.0, nx=True) is True
    assert await backend.set(key, b"second", 30.0, nx=True) is False
    assert await backend.get(key) == b"first"
    await backend.delete([key])


async def check_ttl(backend: CacheBackend) -> None:
    """``ttl`` reports seconds left, ``math.inf`` without expiry, None when absent; a set
    without ttl clears an earlier one."""
    key = _K + "ttl:x"
    assert await backend.ttl(key) is None
    await backend.set(key, b"v", 30.0)
    left = await backend.ttl(key)
    assert left is not None
    assert 0 < left <= 30.0
    await backend.set(key, b"v")
    assert await backend.ttl(key) == math.inf
    await backend.delete([key])


async def check_expiry(backend: CacheBackend) -> None:
    """A key set with a TTL disappears once it has passed, and not before it is set."""
    key = _K + "expiry:x"
    await backend.set(key, b"v", 0.05)

    async def gone() -> bool:
        return await backend.get(key) is None

    await eventually(gone)
    assert await backend.ttl(key) is None


LIFETIME_TTL = 1.0
"""The TTL (seconds) of the lifetime checks."""

LIFETIME_CHECKED_AT = 0.8
"""The part of its TTL after which a key, lock or lease must still be there."""


async def check_key_lives_its_ttl(backend: CacheBackend) -> None:
    """A key set with a TTL is still there at 80% of it, counted from when the set was
    sent (the server's clock can only start later), and reports time left."""
    key = _K + "lifetime:x"
    sent = trio.current_time()
    await backend.set(key, b"v", LIFETIME_TTL)
    await trio.sleep_until(sent + LIFETIME_TTL * LIFETIME_CHECKED_AT)
    assert await backend.get(key) == b"v", (
        f"a key set with ttl={LIFETIME_TTL:g}s was gone after "
        f"{LIFETIME_TTL * LIFETIME_CHECKED_AT:g}s"
    )
    left = await backend.ttl(key)
    assert left is not None
    assert left > 0
    await backend.delete([key])


async def check_mget(backend: CacheBackend) -> None:
    """``mget`` answers in order, None for absent keys; an empty list is fine."""
    a, b, c = (_K + f"mget:{n}" for n in "abc")
    await backend.set(a, b"1", 30.0)
    await backend.set(c, b"3", 30.0)
    assert await backend.mget([a, b, c, a]) == [b"1", None, b"3", b"1"]
    assert await backend.mget([]) == []
    await backend.delete([a, c])


async def check_delete(backend: CacheBackend) -> None:
    """``delete`` counts only keys that existed; they are gone afterwards."""
    a, b = _K + "delete:a", _K + "delete:b"
    await backend.set(a, b"1", 30.0)
    assert await backend.delete([a, b]) == 1
    assert await backend.get(a) is None
    assert await backend.delete([]) == 0


async def check_incr(backend: CacheBackend) -> None:
    """``incr`` starts from 0, adds any amount (negative too) and keeps the TTL."""
    key = _K + "incr:x"
    assert await backend.incr(key) == 1
    assert await backend.incr(key, 5) == 6
    assert await backend.incr(key, -10) == -4
    assert await backend.get(key) == b"-4"
    await backend.set(key, b"41", 30.0)
    assert await backend.incr(key) == 42
    left = await backend.ttl(key)
    assert left is not None
    assert 0 < left <= 30.0
    await backend.delete([key])


async def check_incr_not_an_integer(backend: CacheBackend) -> None:
    """``incr`` of a non-integer value raises CacheError (not CacheUnavailable)."""
    key = _K + "incr-bad:x"
    await backend.set(key, b"not a number", 30.0)
    try:
        await backend.incr(key)
    except CacheUnavailable as exc:  # pragma: no cover - a failing backend
        raise AssertionError(
            f"incr of a non-integer raised {exc!r}, not a plain CacheError"
        ) from exc
    except CacheError:
        pass
    else:
        raise AssertionError("incr of a non-integer value did not raise CacheError")
    assert await backend.get(key) == b"not a number"
    await backend.delete([key])


_NOT_INTEGERS = (b" 5", b"+5", b"1_000", b"007", b"-0", b"", b"1e3", b"9223372036854775808")


async def check_incr_reads_integers_as_redis_does(backend: CacheBackend) -> None:
    """``incr`` accepts exactly ``0`` or ``-?[1-9][0-9]*`` within 64 bits, as Redis'
    ``INCRBY``; anything else, a result past 64 bits, or an amount outside 64 bits is a
    CacheError, and the value is left as it was."""
    key = _K + "incr-strict:x"
    for raw in _NOT_INTEGERS:
        await backend.set(key, raw, 30.0)
        try:
            await backend.incr(key)
        except CacheUnavailable as exc:  # pragma: no cover - a failing backend
            raise AssertionError(f"incr of {raw!r} raised {exc!r}") from exc
        except CacheError:
            pass
        else:
            raise AssertionError(f"incr of {raw!r} did not raise CacheError (Redis refuses it)")
        assert await backend.get(key) == raw
    for start, amount in ((b"9223372036854775807", 1), (b"-9223372036854775808", -1)):
        await backend.set(key, start, 30.0)
        try:
            await backend.incr(key, amount)
        except CacheError:
            pass
        else:
            raise AssertionError(f"incr of {start!r} by {amount} did not overflow")
        assert await backend.get(key) == start
    await backend.delete([key])
    try:
        await backend.incr(key, 2**63)
    except CacheError:
        pass
    else:
        raise AssertionError("incr by 2**63 did not raise CacheError (Redis refuses it)")


async def check_rejects_what_redis_rejects(backend: CacheBackend) -> None:
    """A key that is not valid UTF-8 text, or a TTL past what Redis accepts, is a
    ``ValueError``, before anything is stored."""
    for call in (
        lambda: backend.get("conformance:\ud800"),
        lambda: backend.set("conformance:\ud800", b"v", 30.0),
        lambda: backend.set(_K + "ttl-range:x", b"v", 1e300),
    ):
        try:
            await call()
        except ValueError:
            pass
        else:
            raise AssertionError("Redis refuses it: the backend must raise ValueError")
    assert await backend.get(_K + "ttl-range:x") is None


async def check_ping(backend: CacheBackend) -> None:
    """``ping`` answers, and raises CacheUnavailable once the backend is closed."""
    await backend.ping()
    await backend.aclose()
    try:
        await backend.ping()
    except CacheUnavailable:
        return
    raise AssertionError("ping of a closed backend did not raise CacheUnavailable")


CACHE_CHECKS: list[Callable[[CacheBackend], Awaitable[None]]] = [
    check_get_absent,
    check_set_then_get,
    check_large_value,
    check_set_nx,
    check_ttl,
    check_expiry,
    check_key_lives_its_ttl,
    check_mget,
    check_delete,
    check_incr,
    check_incr_not_an_integer,
    check_incr_reads_integers_as_redis_does,
    check_rejects_what_redis_rejects,
    check_ping,
]
"""Every cache check, in order (parametrize tests over it)."""


async def check_cache_backend(make_backend: CacheConnector) -> None:
    """Run every check of :data:`CACHE_CHECKS`, each on a fresh ``make_backend()``.

    Example::

        async def test_my_backend():
            await check_cache_backend(lambda: open_my_backend("..."))
    """
    await run_checks(CACHE_CHECKS, make_backend)


async def run_checks(
    checks: Sequence[Callable[[B], Awaitable[None]]],
    make_backend: Callable[[], AbstractAsyncContextManager[B]],
) -> None:
    """Run each of ``checks`` on a fresh ``make_backend()``.

    Example::

        await run_checks(CACHE_CHECKS, MemoryCache().connect)
    """
    for check in checks:
        async with make_backend() as backend:
            await check(backend)
