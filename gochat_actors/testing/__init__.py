"""Test helpers for users of gochat_actors: the whole service in memory and in virtual
time with its servers' faults at hand (``open_test_service``, the ``gochat_service``
fixture of the pytest plugin), and conformance suites for backends.

Example::

    from gochat_actors.testing import open_test_service

    async def test_my_service(autojump_clock):
        async with open_test_service() as svc:
            svc.faults.cache.pause()
"""

from ._cache_conformance import CACHE_CHECKS, check_cache_backend
from ._db_conformance import DB_CHECKS, check_db_backend
from ._faults import DEFAULT_SPARED, PauseServer, ServiceFaultPlan, ServiceFaults
from ._idgen_conformance import IDGEN_CHECKS, check_idgen_backend
from ._lock_conformance import LOCK_CHECKS, check_lock_backend
from ._mq_conformance import MQ_CHECKS, check_mq_backend
from ._service import TestService, in_memory_settings, open_test_service

__all__ = [
    "CACHE_CHECKS",
    "DB_CHECKS",
    "DEFAULT_SPARED",
    "IDGEN_CHECKS",
    "LOCK_CHECKS",
    "MQ_CHECKS",
    "PauseServer",
    "ServiceFaultPlan",
    "ServiceFaults",
    "TestService",
    "check_cache_backend",
    "check_db_backend",
    "check_idgen_backend",
    "check_lock_backend",
    "check_mq_backend",
    "in_memory_settings",
    "open_test_service",
]
