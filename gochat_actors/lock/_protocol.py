"""The small Protocol every lock backend implements (Redis, in-memory, yours)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

__all__ = ["AcquireResult", "LockBackend", "LockConnector", "lock_keys"]


def lock_keys(key_prefix: str, name: str) -> tuple[str, str]:
    """The lock's key and its fence counter's key (one hash slot: ``{name}`` is a hash tag).

    Example::

        >>> lock_keys("chat:", "room:42")
        ('chat:lock:{room:42}', 'chat:lock:{room:42}:fence')
    """
    key = f"{key_prefix}lock:{{{name}}}"
    return key, key + ":fence"


@dataclass(frozen=True, slots=True)
class AcquireResult:
    """The answer to one acquire attempt.

    ``token`` is the fencing token when the lock was acquired (or already held by the
    same ``owner``), ``None`` when someone else holds it; ``retry_after`` is then the
    seconds left on their lease (0.0 when unknown).
    """

    token: int | None
    retry_after: float = 0.0


@runtime_checkable
class LockBackend(Protocol):
    """Atomic lock operations; each call is one round trip.

    ``owner`` identifies one acquisition (a random string without ``:``). Failures to
    reach the server raise :class:`~gochat_actors.LockUnavailable`; other failures
    :class:`~gochat_actors.LockError`.

    Example::

        async with open_redis_locks("redis://127.0.0.1:6379/0") as backend:
            result = await backend.acquire("room:42", owner, 10.0)
            if result.token is not None:
                await backend.release("room:42", owner)
    """

    async def acquire(self, name: str, owner: str, ttl: float) -> AcquireResult:
        """Take ``name`` for ``ttl`` seconds if it is free, with a new fencing token one
        greater than any before for ``name``. If ``owner`` already holds it: its token,
        and the TTL is reset (a retried attempt is harmless)."""
        ...

    async def renew(self, name: str, owner: str, ttl: float) -> bool:
        """Reset the TTL to ``ttl`` if ``owner`` holds ``name``; False if it does not."""
        ...

    async def release(self, name: str, owner: str) -> bool:
        """Delete ``name`` if ``owner`` holds it; False (and nothing deleted) otherwise."""
        ...

    async def ping(self) -> None:
        """One round trip; raises ``LockUnavailable`` when the server does not answer."""
        ...

    async def aclose(self) -> None:
        """Close the connections (later calls raise ``LockUnavailable``)."""
        ...


LockConnector: TypeAlias = Callable[[], AbstractAsyncContextManager[LockBackend]]
"""Opens one live lock backend for an ``async with`` (one actor incarnation, one check)."""
