"""The cache on a private 3-master Redis Cluster (``redis+cluster://``): keys on every
slot, ``mget``/``delete`` across slots with the replies in the caller's order, and the
cache built from settings."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gochat_actors import Dsn
from gochat_actors._redis_cluster import SLOTS, key_slot
from gochat_actors.cache import Cache, CacheSettings, open_redis_cache
from supervisors import open_supervisor
from tests._clusters import RedisCluster, redis_call
from tests._servers import unique_name


def slot_owners(cluster: RedisCluster) -> dict[int, int]:
    """Each slot's master (its port), as ``CLUSTER SLOTS`` tells."""
    reply = redis_call(cluster.addresses[0], "CLUSTER", "SLOTS")
    assert isinstance(reply, list)
    owner: dict[int, int] = {}
    for entry in reply:
        assert isinstance(entry, list)
        start, end, master = entry[0], entry[1], entry[2]
        assert isinstance(start, int)
        assert isinstance(end, int)
        assert isinstance(master, list)
        port = master[1]
        assert isinstance(port, int)
        owner.update(dict.fromkeys(range(start, end + 1), port))
    return owner


def tag_per_slot() -> list[str]:
    """A hash tag for each of the 16384 slots, by slot."""
    tags: dict[int, str] = {}
    n = 0
    while len(tags) < SLOTS:
        tags.setdefault(key_slot(f"t{n}"), f"t{n}")
        n += 1
    return [tags[slot] for slot in range(SLOTS)]


def keys_on_three_masters(cluster: RedisCluster, prefix: str, count: int) -> Iterator[str]:
    owners = slot_owners(cluster)
    assert len(set(owners.values())) == 3  # the fixture's three masters share the slots
    for n in range(count):
        yield f"{prefix}k{n}"


async def test_keys_across_the_slots_of_every_master_round_trip(
    redis_cluster: RedisCluster,
) -> None:
    """Each 16th slot and each master's first and last slot, through SET, one MGET and one
    DEL. (All 16384 slots took 22 s here: a command over several slots costs one request
    per slot, as Redis refuses keys of two slots in one MGET.)"""
    prefix = unique_name("cluster", sep=":") + ":"
    tags = tag_per_slot()
    owners = slot_owners(redis_cluster)
    edges = {
        s for s in range(SLOTS) if owners.get(s - 1) != owners[s] or owners.get(s + 1) != owners[s]
    }
    slots = sorted(set(range(0, SLOTS, 16)) | edges)
    assert {0, SLOTS - 1} <= set(slots)
    assert len(edges) == 6  # three masters, each a first and a last slot
    keys = [f"{prefix}{{{tags[slot]}}}" for slot in slots]
    assert [key_slot(k) for k in keys] == slots
    limiter = trio.CapacityLimiter(32)
    async with open_redis_cache(redis_cluster.url) as backend:

        async def put(slot: int, key: str) -> None:
            async with limiter:
                assert await backend.set(key, str(slot).encode(), 60.0)

        async with trio.open_nursery() as nursery:
            for slot, key in zip(slots, keys, strict=True):
                nursery.start_soon(put, slot, key)
        values = await backend.mget(keys)  # one call over the slots of every master
        assert values == [str(slot).encode() for slot in slots]
        assert await backend.delete(keys) == len(keys)
        assert set(await backend.mget(keys)) == {None}


@settings(max_examples=20, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=60))
def test_mget_across_slots_answers_in_the_callers_order(
    redis_cluster: RedisCluster, rng: random.Random, count: int
) -> None:
    prefix = unique_name("mget", sep=":") + ":"
    keys = list(keys_on_three_masters(redis_cluster, prefix, count))
    stored = {k: f"v{i}".encode() for i, k in enumerate(keys) if rng.random() < 0.7}
    asked = keys + [f"{prefix}absent{n}" for n in range(rng.randrange(4))]
    rng.shuffle(asked)
    asked += asked[: rng.randrange(3)]  # a key asked twice answers twice

    async def main() -> None:
        async with open_redis_cache(redis_cluster.url, key_prefix="") as backend:
            for key, value in stored.items():
                await backend.set(key, value, 60.0)
            assert await backend.mget(asked) == [stored.get(k) for k in asked]
            assert await backend.delete(list(stored)) == len(stored)

    trio.run(main)


def test_key_slot_agrees_with_the_server(redis_cluster: RedisCluster) -> None:
    samples = ["", "a", "{", "}", "{}", "{}x", "x{}{y}", "a{b}c", "{a}{b}", "é{ü}", "lock:{}}"]
    samples += [f"k{n}" for n in range(50)]
    for key in samples:
        assert key_slot(key) == redis_call(redis_cluster.addresses[0], "CLUSTER", "KEYSLOT", key)


@pytest.mark.parametrize("prefix", ["", "chat:", "{tenant}:"])
async def test_the_cache_runs_on_the_cluster_from_settings(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    """``key_prefix`` with a hash tag (``{tenant}:``) pins every key to one slot: allowed."""
    key_prefix = prefix + unique_name("settings", sep=":") + ":"
    cache = Cache(CacheSettings(url=Dsn(redis_cluster.url), key_prefix=key_prefix))
    async with open_supervisor([cache.spec()]):
        await cache.set("user:1", b"ann", ttl=60.0)
        await cache.set("user:2", b"bob", ttl=60.0)
        assert await cache.incr("count", 5) == 5
        assert await cache.mget(["user:2", "nobody", "user:1"]) == [b"bob", None, b"ann"]
        assert await cache.delete("user:1", "user:2", "count") == 3
