"""``Cache`` on a real Redis: the shared server for the happy path, a private one to pause
(``kill -STOP``) or kill."""

from __future__ import annotations

import gc
import warnings

import coredis.exceptions
import pytest
import trio

from gochat_actors import CacheMiss, CacheTimeout, CacheUnavailable, Dsn
from gochat_actors._redis import open_redis_client
from gochat_actors.cache import JSON, STR, Cache, CacheSettings, open_redis_cache
from gochat_actors.cache._redis import RedisCache
from gochat_actors.metrics import Metrics
from supervisors import open_supervisor
from tests._private import PrivateServer


def settings(url: str, **options: object) -> CacheSettings:
    return CacheSettings.model_validate({"url": Dsn(url), **options})


async def test_cache_on_redis(redis_url: str, redis_key_prefix: str) -> None:
    metrics = Metrics()
    app = redis_key_prefix + "app:"  # the cache's own prefix, inside the test's namespace
    cache = Cache(settings(redis_url, key_prefix=app), metrics=metrics)
    async with open_supervisor([cache.spec()]):
        await cache.set("user:42", {"name": "ann"}, ttl=60.0, codec=JSON)
        assert await cache.get("user:42", codec=JSON) == {"name": "ann"}
        assert 0 < await cache.ttl("user:42") <= 60.0
        with pytest.raises(CacheMiss):
            await cache.get("user:43")
        assert await cache.mget(["user:42", "user:43"], codec=STR) == ['{"name":"ann"}', None]
        assert await cache.incr("views:42", 2) == 2
        assert await cache.delete("user:42", "views:42", "nope") == 2
        assert await cache.ping() > 0
        await cache.set("user:7", b"kept")
    async with open_redis_cache(redis_url, key_prefix=redis_key_prefix) as raw:
        assert await raw.get("app:user:7") == b"kept"  # the prefix was applied ...
        assert await raw.get("user:7") is None  # ... to the key as given


async def test_paused_redis_times_out_then_recovers(private_redis: PrivateServer) -> None:
    cache = Cache(settings(private_redis.url, op_timeout=0.3))
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        await cache.set("k:before", b"1")
        private_redis.pause()
        try:
            for call in (lambda: cache.get("k:before"), lambda: cache.set("k:during", b"2")):
                start = trio.current_time()
                with pytest.raises(CacheTimeout):  # a hang is a timeout, not "unreachable"
                    await call()
                assert trio.current_time() - start >= 0.3  # it waited its whole budget
        finally:
            private_redis.resume()
        # replies to the abandoned requests must not be taken for later ones
        for n in range(20):
            await cache.set(f"k:{n}", str(n))
        assert await cache.mget([f"k:{n}" for n in range(20)], codec=STR) == [
            str(n) for n in range(20)
        ]
        nursery.cancel_scope.cancel()


async def test_killed_redis_is_unavailable(private_redis: PrivateServer) -> None:
    cache = Cache(settings(private_redis.url, op_timeout=1.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        await cache.set("k", b"v")
        private_redis.process.kill()
        private_redis.process.wait()
        with pytest.raises(CacheUnavailable) as info:
            await cache.get("k")
        assert info.value.__cause__ is not None  # the driver's error, kept as the cause
        nursery.cancel_scope.cancel()


async def test_start_fails_when_redis_is_unreachable(private_redis: PrivateServer) -> None:
    url = private_redis.url
    private_redis.process.kill()
    private_redis.process.wait()
    cache = Cache(settings(url, op_timeout=1.0))
    with pytest.raises(CacheUnavailable, match="unreachable"):
        await cache.run()
    assert not cache.running


async def test_refused_connections_leave_nothing_unclosed(private_redis: PrivateServer) -> None:
    """coredis alone leaves the streams of a never-connected connection unclosed."""
    url = private_redis.url
    private_redis.process.kill()
    private_redis.process.wait()
    for _ in range(3):
        with pytest.raises(CacheUnavailable):
            async with open_redis_cache(url) as backend:
                await backend.ping()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_cancel_while_a_new_connection_opens_is_a_cancellation(
    private_redis: PrivateServer,
) -> None:
    """Issue 27 point 26: Redis paused (it accepts TCP connections but never answers the
    handshake). A caller cancelled while its call opens a new connection sees its own
    cancellation (coredis raised ConnectionError from a ``finally:``, which replaced the
    Cancelled and escaped the caller's cancel scope as CacheUnavailable); a call past its
    own deadline gets CacheTimeout."""
    cache = Cache(settings(private_redis.url, op_timeout=0.3))
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        await cache.set("k", b"v")
        backend = cache._slot.value
        assert isinstance(backend, RedisCache)
        private_redis.pause()
        try:
            backend._client.connection_pool.disconnect()  # as a reset or a restart does
            for _ in range(3):  # each call opens a new connection, whose handshake hangs
                with trio.move_on_after(0.2) as scope:
                    await cache.get("k", timeout=5.0)
                assert scope.cancelled_caught
                with pytest.raises(CacheTimeout):
                    await cache.get("k", timeout=0.2)
        finally:
            private_redis.resume()
        assert await cache.get("k", timeout=5.0) == b"v"
        nursery.cancel_scope.cancel()


# -- issue 22 point 7: streams left unclosed by coredis, found and closed ----------------
def resource_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


async def test_an_exited_client_builds_no_connection(redis_url: str) -> None:
    """A call reaching the pool after it exited (the actor stopped meanwhile) made a
    connection, with six memory streams, that was never run nor closed, and raised a
    raw ``RuntimeError``: now it is refused before any connection is built."""
    async with open_redis_client(redis_url) as client:
        await client.ping()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # from __del__ too, at once
        with pytest.raises(coredis.exceptions.ConnectionError, match="closed"):
            await client.get("k")
        assert resource_warnings() == []


async def test_calls_in_flight_when_the_actor_stops_leave_nothing_unclosed(
    redis_url: str, redis_key_prefix: str
) -> None:
    seen: set[type[BaseException]] = set()
    for round in range(10):
        cache = Cache(settings(redis_url, key_prefix=redis_key_prefix, op_timeout=0.5))

        async def call(cache: Cache, n: int) -> None:
            while True:
                try:
                    await cache.set(f"k{n}", b"v")
                except Exception as exc:
                    seen.add(type(exc))
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as callers:
            async with trio.open_nursery() as actor:
                await actor.start(cache.run)
                for n in range(30):
                    callers.start_soon(call, cache, n)
                await trio.sleep(0.001 * (round % 3))
                if round % 2:  # drop the connection: the calls open new ones
                    backend = cache._slot.value
                    assert isinstance(backend, RedisCache)
                    backend._client.connection_pool.disconnect()
                await trio.sleep(0.001 * (round % 4))
                actor.cancel_scope.cancel()  # the actor stops with calls in flight
            await trio.sleep(0.05)  # the calls in flight end (those after it just wait)
            callers.cancel_scope.cancel()
    assert seen <= {CacheUnavailable, CacheTimeout}
    assert resource_warnings() == []


async def test_redis_rejects_what_memory_rejects(redis_url: str, redis_key_prefix: str) -> None:
    """Issue 27 point 28 / issue 22 point 6: the same calls as on the in-memory backend,
    the same typed errors (the memory backend stands in for Redis in tests)."""
    from tests.gochat_actors.cache.test_cache import check_rejects_what_redis_rejects

    cache = Cache(settings(redis_url, key_prefix=redis_key_prefix))
    async with open_supervisor([cache.spec()]):
        await check_rejects_what_redis_rejects(cache)
