"""Test helpers for users of gochat_actors: conformance suites for backends.

Example::

    from gochat_actors.testing import CACHE_CHECKS, check_cache_backend

    async def test_my_cache_backend():
        await check_cache_backend(my_backend.connect)
"""

from ._cache_conformance import CACHE_CHECKS, check_cache_backend
from ._db_conformance import DB_CHECKS, check_db_backend
from ._idgen_conformance import IDGEN_CHECKS, check_idgen_backend
from ._lock_conformance import LOCK_CHECKS, check_lock_backend
from ._mq_conformance import MQ_CHECKS, check_mq_backend

__all__ = [
    "CACHE_CHECKS",
    "DB_CHECKS",
    "IDGEN_CHECKS",
    "LOCK_CHECKS",
    "MQ_CHECKS",
    "check_cache_backend",
    "check_db_backend",
    "check_idgen_backend",
    "check_lock_backend",
    "check_mq_backend",
]
