"""The locks' backends by URL scheme: ``memory://`` (the in-memory key space, shared with
the cache's), ``redis://``/``rediss://`` and ``redis+cluster://``/``rediss+cluster://``
(coredis, imported only when used). The registry also checks ``[lock] url`` (see
:class:`~gochat_actors.lock.LockSettings`)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .. import _kv_backends as kv
from .._backends import Backends
from .._dsn import Dsn
from .._exceptions import LockError
from .._tls import NO_TLS, TLSFiles
from ._memory import MemoryLockBackend
from ._protocol import LockBackend

__all__ = ["BACKENDS", "LockFactory", "open_redis_locks"]

LockFactory = kv.KVFactory[LockBackend]  # (url, key_prefix, op_timeout, store, *, tls)


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
    from ._errors import lock_error
    from ._redis import RedisLockBackend, cluster_lock_keys

    dsn = url if isinstance(url, Dsn) else Dsn(url)
    make = functools.partial(RedisLockBackend, key_prefix=key_prefix)
    if dsn.scheme in CLUSTER_SCHEMES:
        make = functools.partial(make, keys=cluster_lock_keys)
    async with open_redis_backend(
        dsn, make, op_timeout=op_timeout, tls=tls, error=LockError, translate=lock_error
    ) as backend:
        yield backend


def _load_sentinel() -> kv.SentinelOpener[LockBackend]:
    from ._sentinel import open_sentinel_locks  # coredis is imported only now

    return open_sentinel_locks


_redis = kv.redis_factory(open_redis_locks)
BACKENDS: Backends[LockFactory] = Backends("lock")
BACKENDS.add(_redis, "redis", "rediss")
BACKENDS.add(kv.memory_factory(MemoryLockBackend), "memory")
BACKENDS.add(_redis, "redis+cluster", "rediss+cluster")  # the same code: a cluster client
BACKENDS.add(kv.sentinel_factory(_load_sentinel), "redis+sentinel")
