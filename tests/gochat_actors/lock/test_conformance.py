"""The lock conformance suite, unchanged, on every backend of the locks' registry (Redis
and the in-memory one), each built by its registered factory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from gochat_actors import Dsn, LockUnavailable
from gochat_actors.cache import MemoryStore
from gochat_actors.lock import (
    AcquireResult,
    LockBackend,
    MemoryLockBackend,
    lock_keys,
    open_redis_locks,
)
from gochat_actors.lock._backends import BACKENDS
from gochat_actors.testing import LOCK_CHECKS, check_lock_backend
from tests._clusters import RedisCluster, RedisSentinel
from tests._private import PrivateServer
from tests._servers import unique_name

Check = Callable[[LockBackend], Awaitable[None]]


def _name(check: Check) -> str:
    return getattr(check, "__name__", "check")


CHECKED = {"memory", "redis", "redis+sentinel", "redis+cluster"}
"""The backends (by first scheme) whose conformance tests are below."""


def test_every_registered_backend_runs_the_suite() -> None:
    """A backend added to the registry fails here until it gets its conformance run."""
    assert set(BACKENDS.kinds()) == CHECKED


@pytest.mark.parametrize("check", LOCK_CHECKS, ids=_name)
async def test_memory_backend(check: Check, autojump_clock: trio.testing.MockClock) -> None:
    connect = BACKENDS.factory("memory")(Dsn("memory://"), "", 1.0, MemoryStore())
    async with connect() as backend:
        await check(backend)


@pytest.mark.parametrize("check", LOCK_CHECKS, ids=_name)
async def test_redis_backend(check: Check, redis_url: str, redis_key_prefix: str) -> None:
    connect = BACKENDS.factory("redis")(Dsn(redis_url), redis_key_prefix, 1.0, None)
    async with connect() as backend:
        await check(backend)


async def test_sentinel_backend_whole_suite(redis_sentinel: RedisSentinel) -> None:
    """The whole suite on the master a private Sentinel setup names (one setup: they
    take a second or two each)."""
    connect = BACKENDS.factory("redis+sentinel")(Dsn(redis_sentinel.url()), "", 1.0, None)
    await check_lock_backend(connect)


@pytest.mark.parametrize("check", LOCK_CHECKS, ids=_name)
async def test_redis_cluster_backend(check: Check, redis_cluster: RedisCluster) -> None:
    """The suite on a private 3-master Redis Cluster: its keys land on every master."""
    prefix = unique_name("lock", sep=":") + ":"
    connect = BACKENDS.factory("redis+cluster")(Dsn(redis_cluster.url), prefix, 1.0, None)
    async with connect() as backend:
        await check(backend)


async def test_whole_suite_on_one_memory_store(autojump_clock: trio.testing.MockClock) -> None:
    await check_lock_backend(MemoryLockBackend(MemoryStore()).connect)


async def test_redis_layout_value_and_fence(redis_url: str, redis_key_prefix: str) -> None:
    """The lock's value is ``<token>:<owner>``; the fence counter never expires."""
    from gochat_actors.cache import open_redis_cache

    key, fence = lock_keys(redis_key_prefix, "room:42")
    async with open_redis_locks(redis_url, key_prefix=redis_key_prefix) as backend:
        result = await backend.acquire("room:42", "f" * 32, 30.0)
    async with open_redis_cache(redis_url) as raw:
        assert await raw.get(key) == f"{result.token}:{'f' * 32}".encode()
        assert await raw.get(fence) == str(result.token).encode()
        assert await raw.ttl(fence) == float("inf")


async def test_redis_reloads_its_scripts_after_a_flush(private_redis: PrivateServer) -> None:
    """EVALSHA of an unknown script loads it and retries (SCRIPT FLUSH, a new server).

    On the private server: flushing the shared one's scripts would disturb other tests.
    """
    from gochat_actors.lock._redis import _SHA, ACQUIRE, RedisLockBackend

    async with open_redis_locks(private_redis.url) as backend:
        assert isinstance(backend, RedisLockBackend)
        await backend._client.script_flush()
        assert (await backend.acquire("x", "a" * 32, 30.0)).token == 1
        assert await backend._client.script_exists([_SHA[ACQUIRE]]) == (True,)


async def test_closed_connections_are_unavailable(redis_url: str) -> None:
    async with open_redis_locks(redis_url) as backend:
        pass
    with pytest.raises(LockUnavailable):
        await backend.acquire("x", "a" * 32, 1.0)
    with pytest.raises(LockUnavailable):
        await backend.ping()


# -- issue 28: the suite rejects backends that keep locks too short, or never fail ------
class HalfTtlLocks(MemoryLockBackend):
    """Keeps locks for half the TTL asked: two holders at once under Locks."""

    async def acquire(self, name: str, owner: str, ttl: float) -> AcquireResult:
        return await super().acquire(name, owner, ttl / 2)

    async def renew(self, name: str, owner: str, ttl: float) -> bool:
        return await super().renew(name, owner, ttl / 2)


class PingAlwaysAnswers(MemoryLockBackend):
    async def ping(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_the_suite_rejects_a_backend_keeping_locks_half_their_ttl(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(AssertionError, match=r"was free again after 0\.8s"):
        await check_lock_backend(HalfTtlLocks().connect)


async def test_the_suite_rejects_a_ping_that_cannot_fail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(AssertionError, match="ping of a closed backend"):
        await check_lock_backend(PingAlwaysAnswers().connect)
