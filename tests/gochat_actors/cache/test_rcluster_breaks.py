"""Adversarial checks of the Redis Cluster backends (review branch ``redisbreak``): a
slot being migrated (``TRYAGAIN``/``ASK`` for a script or an ``MGET`` in that slot), a
master lost (``CLUSTERDOWN``), huge ``mget`` lists and keys holding braces.

The slot-migration and node-loss tests run their own private cluster (the session's
``redis_cluster`` must never be disturbed)."""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterator

import pytest
import trio

from gochat_actors import CacheUnavailable, Dsn, LockUnavailable
from gochat_actors._redis_cluster import key_slot
from gochat_actors.cache import Cache, CacheSettings, open_redis_cache
from gochat_actors.cache._backends import BACKENDS as CACHE_BACKENDS
from gochat_actors.lock import open_redis_locks
from gochat_actors.lock._redis import cluster_lock_keys
from supervisors import open_supervisor
from tests._clusters import RedisCluster, redis_call, redis_cluster_running, wait_until
from tests._servers import unique_name


@pytest.fixture
def own_cluster() -> Iterator[RedisCluster]:
    """A private 3-master cluster this test may reshard or kill a node of."""
    with redis_cluster_running() as cluster:
        yield cluster


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _owner(cluster: RedisCluster, slot: int) -> tuple[str, str]:
    """(address, node id) of the master serving ``slot``."""
    for line in _text(redis_call(cluster.addresses[0], "CLUSTER", "NODES")).splitlines():
        parts = line.split()
        node_id, address = parts[0], parts[1].split("@")[0]
        for span in parts[8:]:
            if span.startswith("["):
                continue
            low, _, high = span.partition("-")
            if int(low) <= slot <= int(high or low):
                return address, node_id
    raise AssertionError(f"no owner for slot {slot}")


def _start_migrating(cluster: RedisCluster, slot: int) -> None:
    source, source_id = _owner(cluster, slot)
    target = next(a for a in cluster.addresses if a != source)
    target_id = _text(redis_call(target, "CLUSTER", "MYID"))
    redis_call(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
    redis_call(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)


async def test_a_lock_in_a_migrating_slot_fails_typed(own_cluster: RedisCluster) -> None:
    prefix = unique_name("lock", sep=":") + ":"
    async with open_redis_locks(own_cluster.url, key_prefix=prefix) as backend:
        assert (await backend.acquire("room", "a", 5.0)).token == 1
        assert await backend.release("room", "a")  # the fence counter stays, the lock goes
        key, _ = cluster_lock_keys(prefix, "room")
        _start_migrating(own_cluster, key_slot(key))
        # The script names the lock (absent on the source) and the fence counter (there):
        # Redis answers TRYAGAIN until the counter has moved. Transient: LockUnavailable.
        with pytest.raises(LockUnavailable):
            await backend.acquire("room", "b", 5.0)


async def test_mget_in_a_migrating_slot_fails_typed(own_cluster: RedisCluster) -> None:
    prefix = "{" + unique_name("tag", sep=":") + "}:"  # every key in one slot
    async with open_redis_cache(own_cluster.url, key_prefix=prefix) as cache:
        await cache.set("here", b"1", 30.0)
        _start_migrating(own_cluster, key_slot(prefix))
        with pytest.raises(CacheUnavailable):
            await cache.mget(["here", "not-here"])


async def test_a_cluster_that_lost_a_master_is_unavailable(own_cluster: RedisCluster) -> None:
    async with open_redis_cache(own_cluster.url, key_prefix="k:") as cache:
        await cache.set("x", b"1", 30.0)  # the client has learnt the slot map
        dead = own_cluster.nodes[0]
        # A key served by a live master: after the death it answers CLUSTERDOWN.
        key = next(
            f"k{i}"
            for i in range(10_000)
            if _owner(own_cluster, key_slot(f"k:k{i}"))[0] != dead.address
        )
        dead.kill()
        alive = own_cluster.nodes[1:]

        def failed() -> bool:
            return all(
                "cluster_state:fail" in _text(redis_call(n.address, "CLUSTER", "INFO"))
                for n in alive
            )

        wait_until("cluster: cluster_state:fail", failed, 30.0, alive)
        with pytest.raises(CacheUnavailable):
            await cache.get(key)


async def test_a_huge_mget_across_slots_keeps_the_order(redis_cluster: RedisCluster) -> None:
    """Held: 20,000 keys over every master, every other one missing, duplicates too."""
    prefix = unique_name("cache", sep=":") + ":"
    connect = CACHE_BACKENDS.factory("redis+cluster")(Dsn(redis_cluster.url), prefix, 5.0, None)
    keys = [f"k{i}" for i in range(20_000)]
    async with connect() as cache:
        for i in range(0, len(keys), 2):
            await cache.set(keys[i], str(i).encode(), 60.0)
        asked = keys + keys[:100]
        got = await cache.mget(asked)
        expected = [str(int(k[1:])).encode() if int(k[1:]) % 2 == 0 else None for k in asked]
        assert got == expected
        assert await cache.delete(keys) == len(keys) // 2


@pytest.mark.parametrize("key", ["{a}", "}{", "{", "}", "{}x", "a{b}c{d}", "{{x}}"])
async def test_keys_with_braces_round_trip(redis_cluster: RedisCluster, key: str) -> None:
    """Held: a cache key holding braces, with or without a tagged prefix."""
    for prefix in (unique_name("c", sep=":") + ":", "{" + unique_name("t", sep=":") + "}"):
        async with open_redis_cache(redis_cluster.url, key_prefix=prefix) as cache:
            await cache.set(key, b"v", 30.0)
            assert await cache.mget([key, key + "-missing", key]) == [b"v", None, b"v"]
            assert await cache.delete([key]) == 1


@pytest.mark.parametrize("op", ["mget", "delete"])
async def test_a_cross_slot_op_with_a_master_gone_fails_typed(
    own_cluster: RedisCluster, op: str
) -> None:
    keys = [f"k{i}" for i in range(50)]  # spread over the three masters
    async with open_redis_cache(own_cluster.url, key_prefix="x:") as cache:
        for key in keys:
            await cache.set(key, b"1", 60.0)  # the client has learnt the slot map
        own_cluster.nodes[0].kill()  # refused at once: no waiting for the cluster's view
        call = cache.mget if op == "mget" else cache.delete
        with pytest.raises(CacheUnavailable):
            await call(keys)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a SIGSTOPped node, a black hole)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


HANG = 5.0  # a hang shows as this; the operations are bounded by 0.5 s


@pytest.mark.parametrize("what", ["cache", "lock"])
async def test_a_cluster_nobody_answers_is_unavailable_typed(what: str) -> None:
    with socket.socket() as spare:  # a free port, closed: connection refused
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    opener = open_redis_cache if what == "cache" else open_redis_locks
    try:
        with pytest.raises((CacheUnavailable, LockUnavailable)):
            async with opener(f"redis+cluster://127.0.0.1:{port}", op_timeout=0.5) as backend:
                await backend.ping()
    finally:
        gc.collect()  # the refused connections' unclosed streams warn here, not in a later test


async def test_a_silent_first_member_does_not_hang_the_cache_start(
    redis_cluster: RedisCluster, silent_port: int
) -> None:
    members = ",".join([f"127.0.0.1:{silent_port}", *redis_cluster.addresses])
    cache = Cache(CacheSettings(url=f"redis+cluster://{members}", op_timeout=0.5))  # type: ignore[arg-type]
    try:
        with trio.move_on_after(HANG) as hang:
            async with open_supervisor([cache.spec()]):
                await cache.set("silent-first", b"1", 10.0)
    finally:
        gc.collect()  # streams left by the abandoned start warn here, not in a later test
    assert not hang.cancelled_caught, "the cache never started"
