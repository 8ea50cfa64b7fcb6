"""The cache's backends by URL scheme: ``memory://`` (the in-memory key space),
``redis://``/``rediss://`` and ``redis+cluster://``/``rediss+cluster://`` (coredis,
imported only when such a URL is used). The registry also checks ``[cache] url`` (see
:class:`~gochat_actors.cache.CacheSettings`)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .. import _kv_backends as kv
from .._backends import Backends
from .._dsn import Dsn
from .._exceptions import CacheError
from .._tls import NO_TLS, TLSFiles
from ._memory import MemoryCache
from ._protocol import CacheBackend

__all__ = ["BACKENDS", "CacheFactory", "open_redis_cache"]

CacheFactory = kv.KVFactory[CacheBackend]  # (url, key_prefix, op_timeout, store, *, tls)


@asynccontextmanager
async def open_redis_cache(
    url: Dsn | str, *, key_prefix: str = "", op_timeout: float = 1.0, tls: TLSFiles = NO_TLS
) -> AsyncIterator[CacheBackend]:
    """Open the Redis :class:`CacheBackend` for the ``async with`` block (coredis is
    imported only now). With its arguments bound it is a :data:`CacheConnector`.
    ``redis+cluster://`` URLs open a Redis Cluster; ``tls`` holds the TLS files of
    ``rediss://`` and ``rediss+cluster://`` URLs.

    Example::

        async with open_redis_cache("redis://127.0.0.1:6379/0", key_prefix="chat:") as backend:
            await backend.set("user:42", b"ann", 60.0)   # stored as chat:user:42
    """
    from .._redis import open_redis_backend
    from ._errors import translate
    from ._redis import RedisCache

    make = functools.partial(RedisCache, key_prefix=key_prefix)
    async with open_redis_backend(
        url, make, op_timeout=op_timeout, tls=tls, error=CacheError, translate=translate
    ) as backend:
        yield backend


def _load_sentinel() -> kv.SentinelOpener[CacheBackend]:
    from ._sentinel import open_sentinel_cache  # coredis is imported only now

    return open_sentinel_cache


_redis = kv.redis_factory(open_redis_cache)
BACKENDS: Backends[CacheFactory] = Backends("cache")
BACKENDS.add(_redis, "redis", "rediss")
BACKENDS.add(kv.memory_factory(MemoryCache), "memory")
BACKENDS.add(_redis, "redis+cluster", "rediss+cluster")  # the same code: a cluster client
BACKENDS.add(kv.sentinel_factory(_load_sentinel), "redis+sentinel")
