"""The locks' backends by URL scheme: ``memory://`` (the in-memory key space, shared with
the cache's), ``redis://``/``rediss://`` and ``redis+cluster://``/``rediss+cluster://``
(coredis, imported only when used). The registry also checks ``[lock] url`` (see
:class:`~gochat_actors.lock.LockSettings`)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from .._backends import Backends
from .._dsn import Dsn
from .._exceptions import LockError
from .._kvstore import MemoryStore
from .._tls import TLSFiles
from ._memory import MemoryLockBackend
from ._protocol import LockBackend, LockConnector

__all__ = ["BACKENDS", "LockFactory", "open_redis_locks"]

NO_TLS = TLSFiles()


class LockFactory(Protocol):
    """Makes the connector of ``(url, key_prefix, op_timeout, store)``; ``store`` is the
    key space of ``memory://``, ``tls`` the TLS files (``rediss`` schemes)."""

    def __call__(
        self,
        url: Dsn,
        key_prefix: str,
        op_timeout: float,
        store: MemoryStore | None,
        /,
        *,
        tls: TLSFiles = NO_TLS,
    ) -> LockConnector: ...


@asynccontextmanager
async def open_redis_locks(
    url: Dsn | str, *, key_prefix: str = "", op_timeout: float = 1.0, tls: TLSFiles = NO_TLS
) -> AsyncIterator[LockBackend]:
    """Open the Redis :class:`LockBackend` for the ``async with`` block (coredis is
    imported only now). With its arguments bound it is a :data:`LockConnector`.
    ``redis+cluster://`` URLs open a Redis Cluster (the fence counter is kept in its
    lock's hash slot); ``tls`` holds the TLS files of ``rediss`` URLs.

    Example::

        async with open_redis_locks("redis://127.0.0.1:6379/0") as backend:
            result = await backend.acquire("room:42", "owner-a", 10.0)
    """
    from .._redis import open_redis_backend
    from .._redis_cluster import CLUSTER_SCHEMES
    from .._tls import redis_ssl_context
    from ._errors import DRIVER_ERRORS, lock_error
    from ._redis import RedisLockBackend, cluster_lock_keys

    dsn = url if isinstance(url, Dsn) else Dsn(url)
    context = redis_ssl_context(dsn.scheme, tls, error=LockError)
    make = functools.partial(RedisLockBackend, key_prefix=key_prefix)
    if dsn.scheme in CLUSTER_SCHEMES:
        make = functools.partial(make, keys=cluster_lock_keys)
    async with contextlib.AsyncExitStack() as stack:
        try:  # a cluster client connects on entry (to learn the slot map)
            backend = await stack.enter_async_context(
                open_redis_backend(dsn, make, op_timeout=op_timeout, ssl_context=context)
            )
        except DRIVER_ERRORS as exc:
            raise lock_error(exc, "connect") from exc
        yield backend


def _memory(
    url: Dsn,
    key_prefix: str,
    op_timeout: float,
    store: MemoryStore | None,
    /,
    *,
    tls: TLSFiles = NO_TLS,
) -> LockConnector:
    return MemoryLockBackend(store, key_prefix=key_prefix).connect


def _redis(
    url: Dsn,
    key_prefix: str,
    op_timeout: float,
    store: MemoryStore | None,
    /,
    *,
    tls: TLSFiles = NO_TLS,
) -> LockConnector:
    return functools.partial(
        open_redis_locks, url, key_prefix=key_prefix, op_timeout=op_timeout, tls=tls
    )


BACKENDS: Backends[LockFactory] = Backends("lock")
BACKENDS.add(_redis, "redis", "rediss")
BACKENDS.add(_memory, "memory")
BACKENDS.add(_redis, "redis+cluster", "rediss+cluster")  # the same code: a cluster client


@asynccontextmanager
async def _open_sentinel_locks(
    url: Dsn, *, key_prefix: str, op_timeout: float
) -> AsyncIterator[LockBackend]:
    from ._sentinel import open_sentinel_locks  # coredis is imported only now

    async with open_sentinel_locks(url, key_prefix=key_prefix, op_timeout=op_timeout) as backend:
        yield backend


def _sentinel(
    url: Dsn,
    key_prefix: str,
    op_timeout: float,
    store: MemoryStore | None,
    /,
    *,
    tls: TLSFiles = NO_TLS,  # redis+sentinel:// has no TLS form: never set
) -> LockConnector:
    return functools.partial(
        _open_sentinel_locks, url, key_prefix=key_prefix, op_timeout=op_timeout
    )


BACKENDS.add(_sentinel, "redis+sentinel")
