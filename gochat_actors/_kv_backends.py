"""The backend factories of the key-space components (cache, lock): each registers them in
its own registry (``cache/_backends.py``, ``lock/_backends.py``) with its own backends.

A factory takes ``(url, key_prefix, op_timeout, store, *, tls)`` and returns the
component's connector (``() -> async context manager of the backend``):
:func:`memory_factory` on the in-memory key space (``store``), :func:`redis_factory` on
an ``open_redis_...`` function (plain, TLS and cluster URLs), :func:`sentinel_factory`
on an ``open_sentinel_...`` function that a loader imports (coredis) only when a
backend opens.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from ._tls import NO_TLS, TLSFiles

if TYPE_CHECKING:
    from ._dsn import Dsn
    from ._kvstore import MemoryConnection, MemoryStore

__all__ = [
    "KVFactory",
    "RedisOpener",
    "SentinelOpener",
    "memory_factory",
    "redis_factory",
    "sentinel_factory",
]

B = TypeVar("B")
B_co = TypeVar("B_co", covariant=True)
M = TypeVar("M", bound="MemoryConnection")


class RedisOpener(Protocol[B_co]):
    """``open_redis_cache``, ``open_redis_locks``: a backend on a Redis URL."""

    def __call__(
        self, url: Dsn, *, key_prefix: str, op_timeout: float, tls: TLSFiles
    ) -> AbstractAsyncContextManager[B_co]: ...


class SentinelOpener(Protocol[B_co]):
    """``open_sentinel_cache``, ``open_sentinel_locks``: a backend on a Sentinel URL."""

    def __call__(
        self, url: Dsn, *, key_prefix: str, op_timeout: float
    ) -> AbstractAsyncContextManager[B_co]: ...


Connector = Callable[[], AbstractAsyncContextManager[B_co]]
_Make = Callable[["Dsn", str, float, "MemoryStore | None", TLSFiles], Connector[B_co]]


class KVFactory(Generic[B_co]):
    """Makes the connector of ``(url, key_prefix, op_timeout, store)``; ``store`` is the
    key space of ``memory://``, ``tls`` the section's TLS files (``rediss`` schemes).
    It calls ``make(url, key_prefix, op_timeout, store, tls)``."""

    __slots__ = ("_make",)

    def __init__(self, make: _Make[B_co]) -> None:
        self._make = make

    def __call__(
        self,
        url: Dsn,
        key_prefix: str,
        op_timeout: float,
        store: MemoryStore | None,
        /,
        *,
        tls: TLSFiles = NO_TLS,
    ) -> Connector[B_co]:
        return self._make(url, key_prefix, op_timeout, store, tls)


def memory_factory(backend: type[M]) -> KVFactory[M]:
    """The factory of ``memory://``: a connection of ``backend`` (a
    :class:`~gochat_actors._kvstore.MemoryConnection`) to ``store``.

    Example::

        BACKENDS.add(memory_factory(MemoryCache), "memory")
    """
    return KVFactory(
        lambda url, prefix, timeout, store, tls: backend(store, key_prefix=prefix).connect
    )


def redis_factory(open_redis: RedisOpener[B]) -> KVFactory[B]:
    """The factory of Redis URLs (``redis``, ``rediss``, ``redis+cluster``...):
    ``open_redis`` with the URL, the prefix, the timeout and the TLS files bound.

    Example::

        BACKENDS.add(redis_factory(open_redis_cache), "redis", "rediss")
    """
    return KVFactory(
        lambda url, prefix, timeout, store, tls: functools.partial(
            open_redis, url, key_prefix=prefix, op_timeout=timeout, tls=tls
        )
    )


def sentinel_factory(load: Callable[[], SentinelOpener[B]]) -> KVFactory[B]:
    """The factory of ``redis+sentinel://`` URLs: the opener ``load()`` returns (it
    imports the component's Sentinel module, and coredis, only when a backend opens).
    ``redis+sentinel://`` has no TLS form: ``tls`` is never set.

    Example::

        def _load() -> SentinelOpener[CacheBackend]:
            from ._sentinel import open_sentinel_cache
            return open_sentinel_cache

        BACKENDS.add(sentinel_factory(_load), "redis+sentinel")
    """

    @asynccontextmanager
    async def open_sentinel(url: Dsn, *, key_prefix: str, op_timeout: float) -> AsyncIterator[B]:
        async with load()(url, key_prefix=key_prefix, op_timeout=op_timeout) as backend:
            yield backend

    return KVFactory(
        lambda url, prefix, timeout, store, tls: functools.partial(
            open_sentinel, url, key_prefix=prefix, op_timeout=timeout
        )
    )
