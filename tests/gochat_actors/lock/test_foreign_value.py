"""The in-memory lock backend stands in for Redis in tests, and shares its store with
the cache (``store=cache.store``): a value at a lock's key that is not ``token:owner``
(put there through the cache) is a lock held by someone else, as the Redis scripts read
it. The in-memory backend raised a raw ``ValueError`` from ``hold()`` instead, and the
background release undoing that attempt crashed the ``Locks`` actor."""

from __future__ import annotations

import pytest
import trio

from gochat_actors import LockNotAcquired
from gochat_actors.cache import Cache, CacheSettings, MemoryStore
from gochat_actors.lock import Locks, LockSettings
from supervisors import open_supervisor


@pytest.mark.parametrize("value", [b"hello", b"x:y", b"\xff\xfe", b""])
async def test_a_foreign_value_at_a_lock_key_is_a_lock_held_by_another(
    value: bytes, autojump_clock: trio.abc.Clock
) -> None:
    store = MemoryStore()
    cache = Cache(CacheSettings(), store=store)
    locks = Locks(LockSettings(), store=store)
    async with open_supervisor([cache.spec("cache"), locks.spec("locks")]) as sup:
        await cache.set("lock:{room}", value, ttl=5.0)
        with pytest.raises(LockNotAcquired):
            async with locks.hold("room", wait=0.5):
                pytest.fail("a lock held by another was acquired")
        await trio.sleep(1.0)  # the background work of hold() is done
        assert [c.restarts for c in sup.which_children()] == [0, 0]
        assert await cache.get("lock:{room}") == value  # never deleted
        await trio.sleep(5.0)  # expired: free again
        async with locks.hold("room") as lease:
            assert lease.token >= 1
