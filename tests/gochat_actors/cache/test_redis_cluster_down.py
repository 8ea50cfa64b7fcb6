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


def test_a_master_without_its_replicas_refusing_writes_is_unavailable() -> None:
    """``min-replicas-to-write``: the server-side guard of the Sentinel locks (the text
    is Redis 7.0's, from a script's write; transient: a replica comes back)."""
    from gochat_actors.cache._errors import translate as cache_translate
    from gochat_actors.lock._errors import lock_error

    error = coredis.exceptions.ResponseError(
        "NOREPLICAS Not enough good replicas to write. script: 6163, on @user_script:1."
    )
    assert isinstance(cache_translate(error, "SET"), CacheUnavailable)
    assert isinstance(lock_error(error, "lock acquire"), LockUnavailable)
