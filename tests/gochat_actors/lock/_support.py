"""What the in-memory lock tests share: their TTL, keys, a ``Locks`` on a
``MemoryStore``, and running its actor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from gochat_actors.cache import CacheSettings, MemoryStore
from gochat_actors.lock import Locks, LockSettings, lock_keys
from gochat_actors.metrics import Metrics

TTL = 3.0
MARGIN = TTL / 10
OP_TIMEOUT = 0.5
KEY, FENCE = lock_keys("", "room:42")


def make_locks(store: MemoryStore, **options: Any) -> Locks:
    return Locks(
        LockSettings(default_ttl=TTL),
        cache_settings=CacheSettings(op_timeout=OP_TIMEOUT),
        metrics=Metrics(),
        store=store,
        **options,
    )


@asynccontextmanager
async def running(locks: Locks) -> AsyncIterator[trio.CancelScope]:
    """Run the Locks actor; yields the scope that stops it."""
    async with trio.open_nursery() as nursery:
        await nursery.start(locks.run)
        yield nursery.cancel_scope
        nursery.cancel_scope.cancel()
