"""The conformance suite every :class:`~gochat_actors.lock.LockBackend` passes.

Each check is ``async def check_x(backend) -> None`` raising ``AssertionError``, on its
own lock names (``conformance-<check>``), with owners it makes up. Lifetimes are checked
both ways: a lock expires once its TTL has passed, and is still held shortly before (a
backend that keeps locks for half the TTL would let two holders in at once: it fails).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from .._exceptions import LockUnavailable
from ..lock import LockBackend, LockConnector
from ._cache_conformance import LIFETIME_CHECKED_AT, LIFETIME_TTL, eventually, run_checks

__all__ = ["LOCK_CHECKS", "check_lock_backend"]

A, B = "0" * 31 + "a", "0" * 31 + "b"  # two owners


async def _token(backend: LockBackend, name: str, owner: str, ttl: float = 30.0) -> int:
    result = await backend.acquire(name, owner, ttl)
    assert result.token is not None, f"{name!r} should have been acquired by {owner}"
    return result.token


async def check_acquire_free(backend: LockBackend) -> None:
    """A free lock is acquired with a positive integer token."""
    token = await _token(backend, "conformance-free", A)
    assert isinstance(token, int)
    assert token >= 1
    assert await backend.release("conformance-free", A) is True


async def check_acquire_held(backend: LockBackend) -> None:
    """A held lock is refused to another owner, with the holder's time left."""
    name = "conformance-held"
    await _token(backend, name, A, 30.0)
    result = await backend.acquire(name, B, 30.0)
    assert result.token is None
    assert 0 < result.retry_after <= 30.0
    assert await backend.release(name, A) is True


async def check_acquire_again_by_owner(backend: LockBackend) -> None:
    """The holder acquiring again (a retried request) gets its own token back."""
    name = "conformance-again"
    first = await _token(backend, name, A)
    assert await _token(backend, name, A) == first
    assert await backend.release(name, A) is True


async def check_tokens_increase(backend: LockBackend) -> None:
    """Each acquisition of a name gets a greater token than every one before."""
    name = "conformance-tokens"
    tokens = []
    for owner in (A, B, A, B):
        tokens.append(await _token(backend, name, owner))
        assert await backend.release(name, owner) is True
    assert tokens == sorted(set(tokens)), tokens


async def check_names_are_independent(backend: LockBackend) -> None:
    """Holding one name does not hold another."""
    await _token(backend, "conformance-one", A)
    await _token(backend, "conformance-two", B)
    assert await backend.release("conformance-one", A) is True
    assert await backend.release("conformance-two", B) is True


async def check_renew(backend: LockBackend) -> None:
    """Only the holder renews; a renewal sets the TTL anew."""
    name = "conformance-renew"
    await _token(backend, name, A, 1.0)
    assert await backend.renew(name, B, 30.0) is False
    assert await backend.renew(name, A, 30.0) is True
    result = await backend.acquire(name, B, 30.0)
    assert result.token is None
    assert result.retry_after > 1.0  # the renewal's TTL, not the acquisition's
    assert await backend.release(name, A) is True


async def check_release_only_by_owner(backend: LockBackend) -> None:
    """Another owner's release deletes nothing; the holder's frees the lock, once."""
    name = "conformance-release"
    first = await _token(backend, name, A)
    assert await backend.release(name, B) is False
    assert (await backend.acquire(name, B, 30.0)).token is None
    assert await backend.release(name, A) is True
    assert await backend.release(name, A) is False
    assert await _token(backend, name, B) > first
    assert await backend.release(name, B) is True


async def check_expiry(backend: LockBackend) -> None:
    """An expired lock is free; its old owner can neither renew nor release the new one."""
    name = "conformance-expiry"
    first = await _token(backend, name, A, 0.05)

    async def free() -> bool:
        return (await backend.acquire(name, B, 30.0)).token is not None

    await eventually(free)
    assert await backend.renew(name, A, 30.0) is False
    assert await backend.release(name, A) is False
    assert await _token(backend, name, B) > first  # still B's, with B's token
    assert await backend.release(name, B) is True


async def check_lock_lives_its_ttl(backend: LockBackend) -> None:
    """A lock is still held at 80% of its TTL, counted from when the acquire (or the
    renewal) was sent: ``Locks`` lets its holder work until about then."""
    name = "conformance-lifetime"
    limit = LIFETIME_TTL * LIFETIME_CHECKED_AT
    for renew in (False, True):
        sent = trio.current_time()
        if renew:
            assert await backend.renew(name, A, LIFETIME_TTL) is True
        else:
            await _token(backend, name, A, LIFETIME_TTL)
        await trio.sleep_until(sent + limit)
        result = await backend.acquire(name, B, 30.0)
        what = "renewed" if renew else "acquired"
        assert result.token is None, (
            f"a lock {what} with ttl={LIFETIME_TTL:g}s was free again after {limit:g}s"
        )
    assert await backend.release(name, A) is True


async def check_rejects_what_redis_rejects(backend: LockBackend) -> None:
    """A lock name that is not valid UTF-8 text, or a TTL past what Redis accepts, is a
    ``ValueError``."""
    for name, ttl in (("conformance-\ud800", 30.0), ("conformance-ttl-range", 1e300)):
        try:
            await backend.acquire(name, A, ttl)
        except ValueError:
            continue
        raise AssertionError(f"acquire({name!r}, ttl={ttl:g}): Redis refuses it")


async def check_ping(backend: LockBackend) -> None:
    """``ping`` answers, and raises LockUnavailable once the backend is closed."""
    await backend.ping()
    await backend.aclose()
    try:
        await backend.ping()
    except LockUnavailable:
        return
    raise AssertionError("ping of a closed backend did not raise LockUnavailable")


LOCK_CHECKS: list[Callable[[LockBackend], Awaitable[None]]] = [
    check_acquire_free,
    check_acquire_held,
    check_acquire_again_by_owner,
    check_tokens_increase,
    check_names_are_independent,
    check_renew,
    check_release_only_by_owner,
    check_expiry,
    check_lock_lives_its_ttl,
    check_rejects_what_redis_rejects,
    check_ping,
]
"""Every lock check, in order (parametrize tests over it)."""


async def check_lock_backend(make_backend: LockConnector) -> None:
    """Run every check of :data:`LOCK_CHECKS`, each on a fresh ``make_backend()``.

    Example::

        async def test_my_backend():
            await check_lock_backend(lambda: open_my_locks("..."))
    """
    await run_checks(LOCK_CHECKS, make_backend)
