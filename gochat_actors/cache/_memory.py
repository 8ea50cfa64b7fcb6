"""The in-memory cache: a connection to the in-memory key space
(:class:`~gochat_actors._kvstore.MemoryStore`, TTLs on the trio clock, pause switches)."""

from __future__ import annotations

from collections.abc import Sequence

from .._checks import check_key_text, ttl_ms
from .._exceptions import CacheUnavailable
from .._kvstore import MemoryConnection, MemoryStore

__all__ = ["MemoryCache", "MemoryStore"]


class MemoryCache(MemoryConnection):
    """The in-memory :class:`CacheBackend`. It refuses what Redis refuses, with the same
    errors: keys that are not valid UTF-8 text and TTLs past Redis' limit
    (``ValueError``), ``incr`` of what ``INCRBY`` cannot read or past 64 bits
    (:class:`~gochat_actors.CacheError`).

    Example::

        async with MemoryCache().connect() as backend:
            await backend.set("k", b"v", ttl=1.0)
    """

    unavailable = CacheUnavailable

    async def get(self, key: str) -> bytes | None:
        check_key_text(key)
        return await self._call(lambda: self.store.get(self._prefix + key))

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        for key in keys:
            check_key_text(key)
        return await self._call(lambda: [self.store.get(self._prefix + k) for k in keys])

    async def set(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        check_key_text(key)
        if ttl is not None:
            ttl_ms(ttl)
        return await self._call(lambda: self.store.set(self._prefix + key, value, ttl, nx=nx))

    async def delete(self, keys: Sequence[str]) -> int:
        for key in keys:
            check_key_text(key)
        return await self._call(lambda: sum(self.store.delete(self._prefix + k) for k in keys))

    async def incr(self, key: str, amount: int = 1) -> int:
        check_key_text(key)
        return await self._call(lambda: self.store.incr(self._prefix + key, amount))

    async def ttl(self, key: str) -> float | None:
        check_key_text(key)
        return await self._call(lambda: self.store.ttl(self._prefix + key))
