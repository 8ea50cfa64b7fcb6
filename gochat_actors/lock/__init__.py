"""Distributed locks with fencing tokens and a renewer in the holder's nursery; ``[lock]``
settings.

Example::

    from gochat_actors.lock import Locks

    locks = Locks(settings.lock, cache_settings=settings.cache, metrics=metrics)
    async with locks.hold("room:42", ttl=10.0, wait=5.0) as lease:
        await store.write(room=42, fence=lease.token)
"""

from . import _metrics  # noqa: F401  (the locks' metric families, for Metrics)
from ._backends import open_redis_locks
from ._locks import Lease, Locks
from ._memory import MemoryLockBackend
from ._protocol import AcquireResult, LockBackend, LockConnector, lock_keys
from ._settings import LockSettings

__all__ = [
    "AcquireResult",
    "Lease",
    "LockBackend",
    "LockConnector",
    "LockSettings",
    "Locks",
    "MemoryLockBackend",
    "lock_keys",
    "open_redis_locks",
]
