"""Tests written for the survivors of the mutation run of ``gochat_actors/lock`` that
only a Redis server (or a port that is not one) reaches; see docs/mutants.md. Each test
names the mutants it kills; each was seen failing with its mutants and passing
without, with ``scripts/mutants.py gochat_actors/lock --tests ... --check "" MUTANT...``.
"""

from __future__ import annotations

import gc
import socket
import uuid

import pytest

from gochat_actors import Dsn, LockUnavailable
from gochat_actors._redis import open_redis_backend
from gochat_actors.cache import CacheSettings
from gochat_actors.lock import Locks, LockSettings, lock_keys
from gochat_actors.lock._redis import RedisLockBackend
from supervisors import open_supervisor
from tests._clusters import RedisCluster
from tests._private import free_port
from tests._servers import HOST


async def test_a_redis_server_that_never_answers_fails_the_start_within_the_budget() -> None:
    """Kills ``Locks.__init__`` 76 and 82 (the connect budget, 2 x op_timeout for one
    server, replaced by the owner's default, 1 x op_timeout): a port that accepts
    connections (the kernel's backlog) and never answers, as a SIGSTOPped Redis. A
    cluster client connects on entry (to learn the slot map), so the connect is what
    hangs; a plain Redis client connects lazily, at the first PING."""
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        cache = CacheSettings(url=Dsn(f"redis+cluster://{HOST}:{port}"), op_timeout=0.2)
        locks = Locks(LockSettings(), cache_settings=cache)
        # raised from the owner's nursery: in a group
        unavailable = pytest.RaisesExc(LockUnavailable, match=r"not connected within 0\.4s")
        with pytest.RaisesGroup(unavailable, allow_unwrapped=True, flatten_subgroups=True):
            await locks.run()
    assert not locks.running


async def test_a_ping_to_a_refused_port_is_lock_unavailable() -> None:
    """Kills ``RedisLockBackend.ping`` 5 and 7 (the driver's error translated with no
    exception, or with a missing argument: a TypeError or a plain LockError instead of
    :class:`LockUnavailable`)."""
    url = f"redis://{HOST}:{free_port()}/0"
    async with open_redis_backend(url, RedisLockBackend, op_timeout=0.5) as backend:
        with pytest.raises(LockUnavailable):
            await backend.ping()


async def test_a_backend_made_without_a_prefix_uses_the_bare_keys(redis_url: str) -> None:
    """Kills ``RedisLockBackend.__init__`` 1 (the default ``key_prefix`` is ``""``)."""
    name = f"mutkill-{uuid.uuid4().hex}"
    key, fence = lock_keys("", name)
    async with open_redis_backend(redis_url, RedisLockBackend) as backend:
        try:
            result = await backend.acquire(name, "owner-a", 5.0)
            assert result.token == 1
            assert await backend._client.exists([key, fence]) == 2
        finally:
            await backend._client.delete([key, fence])


async def test_a_silent_first_cluster_member_does_not_hang_the_start(
    redis_cluster: RedisCluster,
) -> None:
    """Kills ``Locks.__init__`` 63 (the op timeout not given to the Redis client): the
    client's connect to each member is bounded by it, so a member that accepts and
    never answers is given up in time to try the next one within the connect budget."""
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(8)
        members = ",".join([f"{HOST}:{silent.getsockname()[1]}", *redis_cluster.addresses])
        cache = CacheSettings(url=Dsn(f"redis+cluster://{members}"), op_timeout=0.5)
        locks = Locks(LockSettings(), cache_settings=cache)
        try:
            async with open_supervisor([locks.spec()]), locks.hold("silent-first") as lease:
                assert lease.token >= 1
        finally:
            gc.collect()  # streams left by the abandoned connect warn here, not later
