"""The locks' backends by URL scheme: ``memory://`` (the in-memory key space, shared with
the cache's) and ``redis://``/``rediss://`` (coredis, imported only when used). The
registry also checks ``[lock] url`` (see :class:`~gochat_actors.lock.LockSettings`)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from .._backends import Backends
from .._dsn import Dsn
from .._kvstore import MemoryStore
from ._memory import MemoryLockBackend
from ._protocol import LockBackend, LockConnector

__all__ = ["BACKENDS", "LockFactory", "open_redis_locks"]

LockFactory = Callable[[Dsn, str, float, MemoryStore | None], LockConnector]
"""Makes the connector of ``(url, key_prefix, op_timeout, store)``; ``store`` is the
key space of ``memory://``."""


@asynccontextmanager
async def open_redis_locks(
    url: Dsn | str, *, key_prefix: str = "", op_timeout: float = 1.0
) -> AsyncIterator[LockBackend]:
    """Open the Redis :class:`LockBackend` for the ``async with`` block (coredis is
    imported only now). With its arguments bound it is a :data:`LockConnector`.

    Example::

        async with open_redis_locks("redis://127.0.0.1:6379/0") as backend:
            result = await backend.acquire("room:42", "owner-a", 10.0)
    """
    from .._redis import open_redis_backend
    from ._redis import RedisLockBackend

    make = functools.partial(RedisLockBackend, key_prefix=key_prefix)
    async with open_redis_backend(url, make, op_timeout=op_timeout) as backend:
        yield backend


def _memory(
    url: Dsn, key_prefix: str, op_timeout: float, store: MemoryStore | None
) -> LockConnector:
    return MemoryLockBackend(store, key_prefix=key_prefix).connect


def _redis(
    url: Dsn, key_prefix: str, op_timeout: float, store: MemoryStore | None
) -> LockConnector:
    return functools.partial(open_redis_locks, url, key_prefix=key_prefix, op_timeout=op_timeout)


BACKENDS: Backends[LockFactory] = Backends("lock")
BACKENDS.add(_redis, "redis", "rediss")
BACKENDS.add(_memory, "memory")


@asynccontextmanager
async def _open_sentinel_locks(
    url: Dsn, *, key_prefix: str, op_timeout: float
) -> AsyncIterator[LockBackend]:
    from ._sentinel import open_sentinel_locks  # coredis is imported only now

    async with open_sentinel_locks(url, key_prefix=key_prefix, op_timeout=op_timeout) as backend:
        yield backend


def _sentinel(
    url: Dsn, key_prefix: str, op_timeout: float, store: MemoryStore | None
) -> LockConnector:
    return functools.partial(
        _open_sentinel_locks, url, key_prefix=key_prefix, op_timeout=op_timeout
    )


BACKENDS.add(_sentinel, "redis+sentinel")
