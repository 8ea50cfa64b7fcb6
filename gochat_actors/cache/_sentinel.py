"""The cache on Redis Sentinel (``redis+sentinel://``): :class:`RedisCache` over the
master the sentinels name, found again after a failover; ``/readyz`` says not ready while
the sentinels have no master. Imports coredis: imported only when such a URL is used.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import coredis

from .._dsn import Dsn
from .._redis_sentinel import SentinelReadiness, SentinelWatch, open_sentinel_backend
from ._protocol import CacheBackend
from ._redis import RedisCache

__all__ = ["SentinelCache", "open_sentinel_cache"]


class SentinelCache(SentinelReadiness, RedisCache):
    """:class:`RedisCache` on the sentinels' master, with :meth:`not_ready`.

    Example::

        async with open_sentinel_cache("redis+sentinel://127.0.0.1:26379/gmaster/0") as cache:
            await cache.set("user:42", b"ann", 60.0)
    """

    def __init__(
        self, client: coredis.Redis[bytes], watch: SentinelWatch, *, key_prefix: str = ""
    ) -> None:
        super().__init__(client, key_prefix=key_prefix)
        self._watch = watch


@asynccontextmanager
async def open_sentinel_cache(
    url: Dsn | str, *, key_prefix: str = "", op_timeout: float = 1.0
) -> AsyncIterator[CacheBackend]:
    """Open the Sentinel :class:`CacheBackend` for the ``async with`` block.

    Example::

        async with open_sentinel_cache(url, key_prefix="chat:") as backend:
            await backend.get("user:42")
    """
    make = functools.partial(SentinelCache, key_prefix=key_prefix)
    async with open_sentinel_backend(url, make, op_timeout=op_timeout) as backend:
        yield backend
