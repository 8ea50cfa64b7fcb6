"""A Redis Cluster that cannot be reached is ``CacheUnavailable``/``LockUnavailable``
(never a raw coredis error), as one unreachable server is."""

from __future__ import annotations

import coredis.exceptions
import pytest

from gochat_actors import CacheUnavailable, LockUnavailable
from gochat_actors.cache import open_redis_cache
from gochat_actors.lock import open_redis_locks
from tests._private import free_port


async def test_an_unreachable_cluster_is_cache_unavailable() -> None:
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    with pytest.raises(CacheUnavailable, match="cannot be connected"):
        async with open_redis_cache(url, op_timeout=0.5) as backend:
            await backend.ping()


async def test_an_unreachable_cluster_is_lock_unavailable() -> None:
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    with pytest.raises(LockUnavailable, match="cannot be connected"):
        async with open_redis_locks(url, op_timeout=0.5) as backend:
            await backend.ping()


@pytest.mark.parametrize(
    "error",
    [
        coredis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
        coredis.exceptions.TryAgainError("TRYAGAIN Multiple keys request during rehashing"),
    ],
)
def test_a_cluster_down_or_resharding_is_unavailable(error: Exception) -> None:
    from gochat_actors.cache._errors import translate

    assert isinstance(translate(error, "GET"), CacheUnavailable)
