"""The in-memory lock backend, over a :class:`~gochat_actors.cache.MemoryStore`."""

from __future__ import annotations

import math

from .._checks import check_key_text, ttl_ms
from .._exceptions import LockUnavailable
from .._kvstore import MemoryConnection
from ._protocol import AcquireResult, lock_keys

__all__ = ["MemoryLockBackend"]


class MemoryLockBackend(MemoryConnection):
    """The in-memory :class:`LockBackend`: the same algorithm as the Redis scripts, each
    call one atomic step of a :class:`~gochat_actors.cache.MemoryStore` (a new one by
    default), on the trio clock. Pause or take the store down to simulate a hung or an
    unreachable server.

    Example::

        store = MemoryStore()
        async with MemoryLockBackend(store).connect() as backend:
            result = await backend.acquire("room:42", "owner-a", 10.0)
    """

    unavailable = LockUnavailable

    def _holder(self, key: str) -> tuple[str, str] | None:
        """The lock's ``(token, owner)``, read as the Redis scripts read it: a value that
        is not ``token:owner`` (written through a shared cache) is someone else's lock."""
        raw = self.store.get(key)
        if raw is None:
            return None
        token, sep, owner = raw.decode("utf-8", "replace").partition(":")
        return token, owner if sep else ""

    async def acquire(self, name: str, owner: str, ttl: float) -> AcquireResult:
        key, fence = lock_keys(self._prefix, check_key_text(name))
        ttl_ms(ttl)  # what Redis refuses, refused here too

        def step() -> AcquireResult:
            holder = self._holder(key)
            if holder is not None:
                if holder[1] == owner:
                    self.store.expire(key, ttl)
                    return AcquireResult(int(holder[0]))
                left = self.store.ttl(key)
                return AcquireResult(None, 0.0 if left is None or left == math.inf else left)
            token = self.store.incr(fence)
            self.store.set(key, f"{token}:{owner}".encode(), ttl, nx=True)
            return AcquireResult(token)

        return await self._call(step)

    async def renew(self, name: str, owner: str, ttl: float) -> bool:
        key, _ = lock_keys(self._prefix, check_key_text(name))
        ttl_ms(ttl)

        def step() -> bool:
            holder = self._holder(key)
            return holder is not None and holder[1] == owner and self.store.expire(key, ttl)

        return await self._call(step)

    async def release(self, name: str, owner: str) -> bool:
        key, _ = lock_keys(self._prefix, check_key_text(name))

        def step() -> bool:
            holder = self._holder(key)
            return holder is not None and holder[1] == owner and self.store.delete(key)

        return await self._call(step)
