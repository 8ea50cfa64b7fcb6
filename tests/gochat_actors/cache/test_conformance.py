"""The cache conformance suite, unchanged, on every backend of the cache's registry
(Redis and the in-memory one), each built by its registered factory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from gochat_actors import CacheUnavailable, Dsn
from gochat_actors.cache import (
    CacheBackend,
    MemoryCache,
    MemoryStore,
    open_redis_cache,
)
from gochat_actors.cache._backends import BACKENDS
from gochat_actors.testing import CACHE_CHECKS, check_cache_backend
from tests._clusters import RedisCluster, RedisSentinel
from tests._servers import unique_name

Check = Callable[[CacheBackend], Awaitable[None]]


def _name(check: Check) -> str:
    return getattr(check, "__name__", "check")


CHECKED = {"memory", "redis", "redis+sentinel", "redis+cluster"}
"""The backends (by first scheme) whose conformance tests are below."""


def test_every_registered_backend_runs_the_suite() -> None:
    """A backend added to the registry fails here until it gets its conformance run."""
    assert set(BACKENDS.kinds()) == CHECKED


@pytest.mark.parametrize("check", CACHE_CHECKS, ids=_name)
async def test_memory_backend(check: Check, autojump_clock: trio.testing.MockClock) -> None:
    connect = BACKENDS.factory("memory")(Dsn("memory://"), "", 1.0, None)
    async with connect() as backend:
        await check(backend)


@pytest.mark.parametrize("check", CACHE_CHECKS, ids=_name)
async def test_redis_backend(check: Check, redis_url: str, redis_key_prefix: str) -> None:
    connect = BACKENDS.factory("redis")(Dsn(redis_url), redis_key_prefix, 1.0, None)
    async with connect() as backend:
        await check(backend)


async def test_sentinel_backend_whole_suite(redis_sentinel: RedisSentinel) -> None:
    """The whole suite on the master a private Sentinel setup names (one setup: they
    take a second or two each)."""
    connect = BACKENDS.factory("redis+sentinel")(Dsn(redis_sentinel.url()), "", 1.0, None)
    await check_cache_backend(connect)


@pytest.mark.parametrize("check", CACHE_CHECKS, ids=_name)
async def test_redis_cluster_backend(check: Check, redis_cluster: RedisCluster) -> None:
    """The suite on a private 3-master Redis Cluster: its keys land on every master."""
    prefix = unique_name("cache", sep=":") + ":"
    connect = BACKENDS.factory("redis+cluster")(Dsn(redis_cluster.url), prefix, 1.0, None)
    async with connect() as backend:
        await check(backend)


async def test_whole_suite_on_one_memory_store(autojump_clock: trio.testing.MockClock) -> None:
    """``check_cache_backend`` runs every check; the checks' keys do not collide."""
    await check_cache_backend(MemoryCache(MemoryStore()).connect)


async def test_redis_backend_prefixes_every_key(redis_url: str, redis_key_prefix: str) -> None:
    app = redis_key_prefix + "app:"  # the backend's prefix, inside the test's namespace
    async with open_redis_cache(redis_url, key_prefix=app) as backend:
        await backend.set("user:1", b"a", 30.0)
        await backend.incr("n")
    async with open_redis_cache(redis_url, key_prefix=redis_key_prefix) as raw:
        assert await raw.mget(["app:user:1", "app:n"]) == [b"a", b"1"]
        assert await raw.mget(["user:1", "n"]) == [None, None]  # not as given


async def test_memory_backend_prefixes_every_key(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    async with MemoryCache(store, key_prefix="app:").connect() as backend:
        await backend.set("user:1", b"a")
    assert store.keys() == ["app:user:1"]


async def test_closed_connections_are_unavailable(redis_url: str) -> None:
    async with open_redis_cache(redis_url) as backend:
        pass
    with pytest.raises(CacheUnavailable):
        await backend.get("k")
    async with MemoryCache().connect() as memory:
        pass
    with pytest.raises(CacheUnavailable):
        await memory.get("k")


# -- issue 28: the suite rejects backends that keep keys too short, or never fail -------
class HalfTtlCache(MemoryCache):
    """Keeps keys for half the TTL asked (every check of expiry alone passes)."""

    async def set(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        return await super().set(key, value, None if ttl is None else ttl / 2, nx=nx)


class PingAlwaysAnswers(MemoryCache):
    async def ping(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_the_suite_rejects_a_backend_keeping_keys_half_their_ttl(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(AssertionError, match=r"was gone after 0\.8s"):
        await check_cache_backend(HalfTtlCache().connect)


async def test_the_suite_rejects_a_ping_that_cannot_fail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(AssertionError, match="ping of a closed backend"):
        await check_cache_backend(PingAlwaysAnswers().connect)
