"""Locks on a Redis Cluster: a lock's key and its fence counter share one hash slot for
any name and any ``key_prefix`` (so its Lua scripts stay single-slot), the single-server
key names are kept wherever they already share a slot, and locks from settings work on
a private 3-master cluster."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gochat_actors import Dsn
from gochat_actors._redis_cluster import key_slot
from gochat_actors.cache import CacheSettings
from gochat_actors.lock import Locks, LockSettings, lock_keys, open_redis_locks
from gochat_actors.lock._redis import cluster_lock_keys
from supervisors import open_supervisor
from tests._clusters import RedisCluster, redis_call
from tests._servers import unique_name

# Text with many braces and colons: the characters hash tags and our suffixes are made of.
braces = st.text(st.sampled_from("{}:ab0é"), max_size=8) | st.text(max_size=12)
# Names the lock takes: valid UTF-8 (no lone surrogates).
names = st.text(st.characters(exclude_categories=["Cs"]), max_size=12) | braces


@given(prefix=names, name=names)
@example(prefix="", name="")
@example(prefix="", name="}x")
@example(prefix="{}", name="room")
@example(prefix="a{", name="")
@example(prefix="{t}", name="}")
def test_a_locks_keys_share_one_slot(prefix: str, name: str) -> None:
    key, fence = cluster_lock_keys(prefix, name)
    assert key_slot(key) == key_slot(fence)
    assert key != fence
    plain = lock_keys(prefix, name)
    assert key == plain[0]  # the lock's key is the single-server one, always
    if key_slot(plain[0]) == key_slot(plain[1]):
        assert fence == plain[1]  # and so is the counter, whenever it already shares the slot


@given(prefix=names, a=names, b=names)
def test_two_locks_never_share_a_key(prefix: str, a: str, b: str) -> None:
    if a == b:
        return
    keys_a, keys_b = set(cluster_lock_keys(prefix, a)), set(cluster_lock_keys(prefix, b))
    assert not keys_a & keys_b


@pytest.mark.parametrize(
    ("prefix", "name"),
    [("", "room:42"), ("", "}x"), ("", ""), ("{}", "room"), ("{tenant}:", "room"), ("a{", "}")],
)
async def test_awkward_names_lock_on_the_cluster(
    redis_cluster: RedisCluster, prefix: str, name: str
) -> None:
    """Names and prefixes whose single-server keys fall in two slots (the scripts would
    fail with CROSSSLOT): acquire, re-acquire, renew, release, tokens increasing."""
    prefix += unique_name("lock", sep=":") + ":"  # after the parametrized part: "{}" stays first
    async with open_redis_locks(redis_cluster.url, key_prefix=prefix) as backend:
        first = await backend.acquire(name, "a" * 32, 30.0)
        assert first.token is not None
        assert (await backend.acquire(name, "b" * 32, 30.0)).token is None
        assert await backend.renew(name, "a" * 32, 30.0)
        assert await backend.release(name, "a" * 32)
        second = await backend.acquire(name, "b" * 32, 30.0)
        assert second.token == first.token + 1
        assert await backend.release(name, "b" * 32)
    key, fence = cluster_lock_keys(prefix, name)
    owner = redis_call(redis_cluster.addresses[0], "CLUSTER", "KEYSLOT", fence)
    assert owner == key_slot(key)


async def test_locks_from_settings_on_the_cluster(redis_cluster: RedisCluster) -> None:
    cache = CacheSettings(
        url=Dsn(redis_cluster.url), key_prefix=unique_name("locks", sep=":") + ":"
    )
    locks = Locks(LockSettings(), cache_settings=cache)  # the lock's url: the cache's
    async with open_supervisor([locks.spec()]):
        tokens = []
        for _ in range(3):
            async with locks.hold("room:42", ttl=10.0, wait=5.0) as lease:
                tokens.append(lease.token)
        assert tokens == sorted(set(tokens))


def test_the_single_server_keys_of_some_names_fall_in_two_slots() -> None:
    """Why the cluster needs :func:`cluster_lock_keys`: these pairs would fail CROSSSLOT."""
    for prefix, name in [("", "}x"), ("", ""), ("{}", "room")]:
        key, fence = lock_keys(prefix, name)
        assert key_slot(key) != key_slot(fence)
        assert cluster_lock_keys(prefix, name)[1] != fence
