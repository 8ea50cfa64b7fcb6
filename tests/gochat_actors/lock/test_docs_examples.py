"""The examples of docs/cache.md and docs/locks.md, run as written."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gochat_actors import CacheMiss, CacheTimeout, LockLost, LockNotAcquired
from gochat_actors.cache import JSON, STR, Cache, CacheSettings, MemoryStore
from gochat_actors.lock import Lease, Locks, LockSettings
from gochat_actors.metrics import Metrics
from gochat_actors.testing import check_cache_backend, check_lock_backend
from supervisors import open_supervisor


async def test_cache_quick_start() -> None:
    cache = Cache(CacheSettings(), metrics=Metrics())
    async with open_supervisor([cache.spec()]):
        await cache.set("user:42", {"name": "ann"}, ttl=60.0, codec=JSON)
        user = await cache.get("user:42", codec=JSON)
        assert user == {"name": "ann"}
        with pytest.raises(CacheMiss):
            await cache.get("user:43")
        await cache.set("user:42:name", "Zoë")
        names = await cache.mget(["user:42:name", "user:43:name"], codec=STR)
        assert names == ["Zoë", None]
        assert await cache.incr("room:42:views") == 1
        await cache.delete("user:42", "user:42:name")


async def test_a_hung_cache_costs_one_timeout(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    cache = Cache(CacheSettings(op_timeout=0.5), store=store)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        store.pause()
        with pytest.raises(CacheTimeout):
            await cache.get("user:1")
        store.resume()
        nursery.cancel_scope.cancel()


compacted: list[tuple[int, int]] = []


async def compact(room: int, fence: int) -> None:
    await trio.lowlevel.checkpoint()
    compacted.append((room, fence))


async def test_locks_quick_start() -> None:
    compacted.clear()
    locks = Locks(LockSettings(), cache_settings=CacheSettings())
    async with open_supervisor([locks.spec()]):
        try:
            async with locks.hold("room:42:compaction", ttl=10.0, wait=5.0) as lease:
                await compact(42, fence=lease.token)
        except LockNotAcquired:  # pragma: no cover - nobody else holds it here
            pass
        assert compacted == [(42, 1)]  # it held the lock, with the first fencing token
        async with locks.hold("room:42:compaction") as again:  # and released it
            assert again.token == 2
            with pytest.raises(LockNotAcquired):  # someone else is compacting it
                async with locks.hold("room:42:compaction", wait=0.1):
                    pass  # pragma: no cover


async def test_a_hung_server_stops_the_holder_in_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    locks = Locks(LockSettings(), cache_settings=CacheSettings(), store=store)
    async with trio.open_nursery() as nursery:
        await nursery.start(locks.run)

        leases: list[Lease] = []

        async def holder() -> None:
            async with locks.hold("room:42", ttl=3.0) as lease:
                leases.append(lease)
                store.pause()
                await trio.sleep_forever()

        with pytest.raises(LockLost):
            await holder()
        assert leases[0].lost.is_set()
        nursery.cancel_scope.cancel()


async def test_the_suites_run_on_the_shipped_memory_backends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from gochat_actors.cache import MemoryCache
    from gochat_actors.lock import MemoryLockBackend

    await check_cache_backend(MemoryCache().connect)
    await check_lock_backend(MemoryLockBackend().connect)
