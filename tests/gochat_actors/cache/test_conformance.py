"""The cache conformance suite, unchanged, on Redis and on the in-memory backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from gochat_actors import CacheUnavailable
from gochat_actors.cache import CacheBackend, MemoryCache, MemoryStore, open_redis_cache
from gochat_actors.testing import CACHE_CHECKS, check_cache_backend

Check = Callable[[CacheBackend], Awaitable[None]]


def _name(check: Check) -> str:
    return getattr(check, "__name__", "check")


@pytest.mark.parametrize("check", CACHE_CHECKS, ids=_name)
async def test_memory_backend(check: Check, autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryCache().connect() as backend:
        await check(backend)


@pytest.mark.parametrize("check", CACHE_CHECKS, ids=_name)
async def test_redis_backend(check: Check, redis_url: str, redis_key_prefix: str) -> None:
    async with open_redis_cache(redis_url, key_prefix=redis_key_prefix) as backend:
        await check(backend)


async def test_whole_suite_on_one_memory_store(autojump_clock: trio.testing.MockClock) -> None:
    """``check_cache_backend`` runs every check; the checks' keys do not collide."""
    await check_cache_backend(MemoryCache(MemoryStore()).connect)


async def test_redis_backend_prefixes_every_key(redis_url: str, redis_key_prefix: str) -> None:
    async with open_redis_cache(redis_url, key_prefix=redis_key_prefix) as backend:
        await backend.set("user:1", b"a", 30.0)
        await backend.incr("n")
    async with open_redis_cache(redis_url) as raw:
        assert await raw.mget([redis_key_prefix + "user:1", redis_key_prefix + "n"]) == [b"a", b"1"]
        assert await raw.get("user:1") is None


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
