"""The small Protocol every cache backend implements (Redis, in-memory, yours)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeAlias, runtime_checkable

__all__ = ["CacheBackend", "CacheConnector"]


@runtime_checkable
class CacheBackend(Protocol):
    """Raw byte operations on one key space; keys are the caller's (the backend adds its
    ``key_prefix``). Failures raise :class:`~gochat_actors.CacheError` subclasses:
    ``CacheUnavailable`` when the server cannot be reached, ``CacheError`` otherwise
    (a wrong type, a value that is not an integer). Absent keys are ``None``, not errors.

    Example::

        async with open_redis_cache("redis://127.0.0.1:6379/0") as backend:
            await backend.set("user:42", b"ann", 60.0)
            assert await backend.get("user:42") == b"ann"
    """

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or ``None`` when absent (or expired)."""
        ...

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys`` in order, ``None`` for each absent one."""
        ...

    async def set(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        """Store ``value`` (expiring after ``ttl`` seconds when given); with ``nx`` only if
        ``key`` is absent. True when stored."""
        ...

    async def delete(self, keys: Sequence[str]) -> int:
        """Delete ``keys``; the number that existed."""
        ...

    async def incr(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to the integer at ``key`` (absent = 0), keeping its TTL; the new value."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Seconds left before ``key`` expires; ``None`` if absent, ``math.inf`` if never."""
        ...

    async def ping(self) -> None:
        """One round trip to the server; raises ``CacheUnavailable`` when it does not answer."""
        ...

    async def aclose(self) -> None:
        """Close the connections (later calls raise ``CacheUnavailable``)."""
        ...


CacheConnector: TypeAlias = Callable[[], AbstractAsyncContextManager[CacheBackend]]
"""Opens one live backend for an ``async with`` (one actor incarnation, one check)."""
