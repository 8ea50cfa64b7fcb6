"""The cache's backends by URL scheme: ``memory://`` (the in-memory key space) and
``redis://``/``rediss://`` (coredis, imported only when such a URL is used). The registry
also checks ``[cache] url`` (see :class:`~gochat_actors.cache.CacheSettings`)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from .._backends import Backends
from .._dsn import Dsn
from .._kvstore import MemoryStore
from ._memory import MemoryCache
from ._protocol import CacheBackend, CacheConnector

__all__ = ["BACKENDS", "CacheFactory", "open_redis_cache"]

CacheFactory = Callable[[Dsn, str, float, MemoryStore | None], CacheConnector]
"""Makes the connector of ``(url, key_prefix, op_timeout, store)``; ``store`` is the
key space of ``memory://``."""


@asynccontextmanager
async def open_redis_cache(
    url: Dsn | str, *, key_prefix: str = "", op_timeout: float = 1.0
) -> AsyncIterator[CacheBackend]:
    """Open the Redis :class:`CacheBackend` for the ``async with`` block (coredis is
    imported only now). With its arguments bound it is a :data:`CacheConnector`.

    Example::

        async with open_redis_cache("redis://127.0.0.1:6379/0", key_prefix="chat:") as backend:
            await backend.set("user:42", b"ann", 60.0)   # stored as chat:user:42
    """
    from .._redis import open_redis_backend
    from ._redis import RedisCache

    make = functools.partial(RedisCache, key_prefix=key_prefix)
    async with open_redis_backend(url, make, op_timeout=op_timeout) as backend:
        yield backend


def _memory(
    url: Dsn, key_prefix: str, op_timeout: float, store: MemoryStore | None
) -> CacheConnector:
    return MemoryCache(store, key_prefix=key_prefix).connect


def _redis(
    url: Dsn, key_prefix: str, op_timeout: float, store: MemoryStore | None
) -> CacheConnector:
    return functools.partial(open_redis_cache, url, key_prefix=key_prefix, op_timeout=op_timeout)


BACKENDS: Backends[CacheFactory] = Backends("cache")
BACKENDS.add(_redis, "redis", "rediss")
BACKENDS.add(_memory, "memory")


@asynccontextmanager
async def _open_sentinel_cache(
    url: Dsn, *, key_prefix: str, op_timeout: float
) -> AsyncIterator[CacheBackend]:
    from ._sentinel import open_sentinel_cache  # coredis is imported only now

    async with open_sentinel_cache(url, key_prefix=key_prefix, op_timeout=op_timeout) as backend:
        yield backend


def _sentinel(
    url: Dsn, key_prefix: str, op_timeout: float, store: MemoryStore | None
) -> CacheConnector:
    return functools.partial(
        _open_sentinel_cache, url, key_prefix=key_prefix, op_timeout=op_timeout
    )


BACKENDS.add(_sentinel, "redis+sentinel")
