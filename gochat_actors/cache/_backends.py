"""The cache's backends by URL scheme: ``memory://`` (the in-memory key space),
``redis://``/``rediss://`` and ``redis+cluster://``/``rediss+cluster://`` (coredis,
imported only when such a URL is used). The registry also checks ``[cache] url`` (see
:class:`~gochat_actors.cache.CacheSettings`)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from .._backends import Backends
from .._dsn import Dsn
from .._exceptions import CacheError
from .._kvstore import MemoryStore
from .._tls import TLSFiles
from ._memory import MemoryCache
from ._protocol import CacheBackend, CacheConnector

__all__ = ["BACKENDS", "CacheFactory", "open_redis_cache"]

NO_TLS = TLSFiles()


class CacheFactory(Protocol):
    """Makes the connector of ``(url, key_prefix, op_timeout, store)``; ``store`` is the
    key space of ``memory://``, ``tls`` the ``[cache]`` TLS files (``rediss`` schemes)."""

    def __call__(
        self,
        url: Dsn,
        key_prefix: str,
        op_timeout: float,
        store: MemoryStore | None,
        /,
        *,
        tls: TLSFiles = NO_TLS,
    ) -> CacheConnector: ...


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
    from .._tls import redis_ssl_context
    from ._errors import DRIVER_ERRORS, translate
    from ._redis import RedisCache

    dsn = url if isinstance(url, Dsn) else Dsn(url)
    context = redis_ssl_context(dsn.scheme, tls, error=CacheError)
    make = functools.partial(RedisCache, key_prefix=key_prefix)
    async with contextlib.AsyncExitStack() as stack:
        try:  # a cluster client connects on entry (to learn the slot map)
            backend = await stack.enter_async_context(
                open_redis_backend(dsn, make, op_timeout=op_timeout, ssl_context=context)
            )
        except DRIVER_ERRORS as exc:
            raise translate(exc, "connect") from exc
        yield backend


def _memory(
    url: Dsn,
    key_prefix: str,
    op_timeout: float,
    store: MemoryStore | None,
    /,
    *,
    tls: TLSFiles = NO_TLS,
) -> CacheConnector:
    return MemoryCache(store, key_prefix=key_prefix).connect


def _redis(
    url: Dsn,
    key_prefix: str,
    op_timeout: float,
    store: MemoryStore | None,
    /,
    *,
    tls: TLSFiles = NO_TLS,
) -> CacheConnector:
    return functools.partial(
        open_redis_cache, url, key_prefix=key_prefix, op_timeout=op_timeout, tls=tls
    )


BACKENDS: Backends[CacheFactory] = Backends("cache")
BACKENDS.add(_redis, "redis", "rediss")
BACKENDS.add(_memory, "memory")
BACKENDS.add(_redis, "redis+cluster", "rediss+cluster")  # the same code: a cluster client


@asynccontextmanager
async def _open_sentinel_cache(
    url: Dsn, *, key_prefix: str, op_timeout: float
) -> AsyncIterator[CacheBackend]:
    from ._sentinel import open_sentinel_cache  # coredis is imported only now

    async with open_sentinel_cache(url, key_prefix=key_prefix, op_timeout=op_timeout) as backend:
        yield backend


def _sentinel(
    url: Dsn,
    key_prefix: str,
    op_timeout: float,
    store: MemoryStore | None,
    /,
    *,
    tls: TLSFiles = NO_TLS,  # redis+sentinel:// has no TLS form: never set
) -> CacheConnector:
    return functools.partial(
        _open_sentinel_cache, url, key_prefix=key_prefix, op_timeout=op_timeout
    )


BACKENDS.add(_sentinel, "redis+sentinel")
