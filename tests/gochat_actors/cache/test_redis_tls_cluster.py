"""The cache and the locks on a Redis Cluster over TLS (``rediss+cluster://`` with
``ca_file``/``cert_file``/``key_file``): three private TLS-only masters that require a
client certificate (``tests/_tls_cluster.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gochat_actors import Dsn
from gochat_actors.cache import Cache, CacheSettings
from gochat_actors.lock import Locks, LockSettings
from supervisors import open_supervisor
from tests._tls_cluster import RedisTLSCluster, redis_tls_cluster_running


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[RedisTLSCluster]:
    with redis_tls_cluster_running() as cluster:
        yield cluster


def settings_of(cluster: RedisTLSCluster) -> CacheSettings:
    return CacheSettings(
        url=Dsn(cluster.url),
        key_prefix="tls-cluster:",
        ca_file=str(cluster.tls.ca),
        cert_file=str(cluster.tls.client_cert),
        key_file=str(cluster.tls.client_key),
    )


async def test_a_cache_round_trip_across_slots_over_tls(tls_cluster: RedisTLSCluster) -> None:
    cache = Cache(settings_of(tls_cluster))
    keys = [f"user:{n}" for n in range(30)]  # on every master
    async with open_supervisor([cache.spec()]):
        for n, key in enumerate(keys):
            await cache.set(key, str(n).encode(), ttl=60.0)
        assert await cache.mget([*reversed(keys), "nobody"]) == [
            *(str(n).encode() for n in reversed(range(30))),
            None,
        ]
        assert await cache.delete(*keys) == 30


async def test_a_lock_over_tls(tls_cluster: RedisTLSCluster) -> None:
    locks = Locks(LockSettings(), cache_settings=settings_of(tls_cluster))
    async with open_supervisor([locks.spec()]):
        async with locks.hold("room:1", ttl=10.0, wait=5.0) as first:
            pass
        async with locks.hold("room:1", ttl=10.0, wait=5.0) as second:
            pass
    assert second.token == first.token + 1
