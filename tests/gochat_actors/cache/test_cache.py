"""``Cache`` on the in-memory backend: codecs, CacheMiss vs CacheError, timeouts (on the
trio clock), waiting through restarts, metrics, health."""

from __future__ import annotations

import datetime
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from gochat_actors import CacheError, CacheMiss, CacheTimeout, CacheUnavailable, Dsn
from gochat_actors.cache import (
    BYTES,
    JSON,
    STR,
    Cache,
    CacheSettings,
    JsonCodec,
    MemoryStore,
    StrCodec,
)
from gochat_actors.metrics import Metrics
from supervisors import Health, open_supervisor


@pytest.fixture
async def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def cache(store: MemoryStore) -> AsyncIterator[Cache]:
    cache = Cache(CacheSettings(op_timeout=0.5), metrics=Metrics(), store=store)
    async with trio.open_nursery() as nursery:
        assert await nursery.start(cache.run) is cache
        yield cache
        nursery.cancel_scope.cancel()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


async def test_bytes_by_default(cache: Cache) -> None:
    assert await cache.set("user:42", b"\x00raw") is True
    value: bytes = await cache.get("user:42")
    assert value == b"\x00raw"


async def test_str_is_stored_as_utf8_and_read_back_with_the_str_codec(cache: Cache) -> None:
    await cache.set("user:42:name", "Zoë")
    assert await cache.get("user:42:name") == "Zoë".encode()
    assert await cache.get("user:42:name", codec=STR) == "Zoë"


async def test_json_codec_round_trips(cache: Cache) -> None:
    value = {"name": "ann", "rooms": [1, 2], "ok": True, "none": None}
    await cache.set("user:42", value, ttl=60.0, codec=JSON)
    assert await cache.get("user:42", codec=JSON) == value
    assert await cache.get("user:42") == b'{"name":"ann","rooms":[1,2],"ok":true,"none":null}'


async def test_codec_options(cache: Cache) -> None:
    await cache.set("k:latin", "café", codec=StrCodec("latin-1"))
    assert await cache.get("k:latin") == "café".encode("latin-1")
    lenient = JsonCodec(default=str)
    await cache.set("k:obj", {"at": datetime.date(2024, 5, 1)}, codec=lenient)
    assert await cache.get("k:obj", codec=lenient) == {"at": "2024-05-01"}
    await cache.set("k:bytes", bytearray(b"ab"))
    await cache.set("k:view", memoryview(b"cd"))
    assert await cache.mget(["k:bytes", "k:view"], codec=BYTES) == [b"ab", b"cd"]


async def test_values_that_need_a_codec_are_refused(cache: Cache) -> None:
    with pytest.raises(TypeError, match="codec=JSON"):
        await cache.set("k:x", {"a": 1})  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="json codec cannot encode"):
        await cache.set("k:x", {"a": object()}, codec=JSON)
    with pytest.raises(TypeError, match="str codec"):
        await cache.set("k:x", 42, codec=STR)  # type: ignore[misc]


async def test_undecodable_value_is_a_cache_error_naming_key_and_codec(cache: Cache) -> None:
    await cache.set("k:bin", b"\xff\xfe")
    with pytest.raises(CacheError, match=r"'k:bin'.*str codec") as info:
        await cache.get("k:bin", codec=STR)
    assert isinstance(info.value.__cause__, UnicodeDecodeError)
    with pytest.raises(CacheError, match="json codec"):
        await cache.get("k:bin", codec=JSON)


async def test_miss_is_cache_miss_a_key_error_and_a_cache_error(cache: Cache) -> None:
    with pytest.raises(CacheMiss) as info:
        await cache.get("user:404")
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, CacheError)
    assert not isinstance(info.value, CacheUnavailable)
    assert str(info.value) == "user:404"


async def test_mget_delete_incr_ttl(cache: Cache, autojump_clock: trio.testing.MockClock) -> None:
    await cache.set("a:1", "x")
    await cache.set("a:3", {"n": 3}, codec=JSON)
    assert await cache.mget(["a:1", "a:2"]) == [b"x", None]
    assert await cache.mget(["a:1", "a:2"], codec=STR) == ["x", None]
    assert await cache.mget([]) == []
    assert await cache.incr("n:views") == 1
    assert await cache.incr("n:views", 10) == 11
    assert await cache.delete("a:1", "a:2", "a:3") == 2
    assert await cache.delete() == 0
    await cache.set("t:1", b"v", ttl=30.0)
    assert await cache.ttl("t:1") == pytest.approx(30.0)
    await cache.set("t:2", b"v")
    assert await cache.ttl("t:2") == math.inf
    with pytest.raises(CacheMiss):
        await cache.ttl("t:404")
    await trio.sleep(30.0)
    with pytest.raises(CacheMiss):
        await cache.get("t:1")


async def test_set_nx(cache: Cache) -> None:
    assert await cache.set("job:7", "w1", ttl=30.0, nx=True) is True
    assert await cache.set("job:7", "w2", ttl=30.0, nx=True) is False
    assert await cache.get("job:7", codec=STR) == "w1"


async def test_incr_of_a_non_integer_is_a_cache_error(cache: Cache) -> None:
    await cache.set("n:bad", "abc")
    with pytest.raises(CacheError, match="not an integer"):
        await cache.incr("n:bad")


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda c: c.get(""), ValueError, "empty"),
        (lambda c: c.get(42), TypeError, "keys are str"),
        (lambda c: c.set("k", b"v", ttl=0), ValueError, "ttl must be"),
        (lambda c: c.set("k", b"v", ttl=math.inf), ValueError, "ttl must be"),
        (lambda c: c.set("k", b"v", ttl="1"), TypeError, "ttl must be a number"),
        (lambda c: c.get("k", timeout=-1), ValueError, "timeout must be"),
        (lambda c: c.mget("abc"), TypeError, "sequence of keys"),
        (lambda c: c.incr("k", 1.5), TypeError, "amount must be an int"),
        (lambda c: c.delete("k", b"k2"), TypeError, "keys are str"),
    ],
)
async def test_bad_input_is_a_clear_typed_error(
    cache: Cache, call: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        await call(cache)


async def test_hung_server_is_a_timeout_after_op_timeout(
    cache: Cache, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    store.pause()
    start = trio.current_time()
    with pytest.raises(CacheTimeout, match=r"timed out after 0\.5s") as info:
        await cache.get("user:1")
    assert isinstance(info.value, TimeoutError)
    assert trio.current_time() - start == pytest.approx(0.5)
    start = trio.current_time()
    with pytest.raises(CacheTimeout):
        await cache.set("user:1", b"v", timeout=2.0)  # a per-call timeout
    assert trio.current_time() - start == pytest.approx(2.0)
    store.resume()
    await cache.set("user:1", b"v")
    assert await cache.get("user:1") == b"v"


async def test_unreachable_server_is_cache_unavailable(cache: Cache, store: MemoryStore) -> None:
    store.take_down()
    with pytest.raises(CacheUnavailable, match="down"):
        await cache.get("user:1")
    store.bring_up()
    with pytest.raises(CacheMiss):
        await cache.get("user:1")


async def test_calls_wait_for_the_actor_up_to_their_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cache = Cache(CacheSettings(op_timeout=1.0))
    assert not cache.running
    start = trio.current_time()
    with pytest.raises(CacheUnavailable, match="not running"):
        await cache.get("k")
    assert trio.current_time() - start == pytest.approx(1.0)

    async def start_later(nursery: trio.Nursery) -> None:
        await trio.sleep(0.5)
        await nursery.start(cache.run)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(start_later, nursery)
        await cache.set("k", b"v")  # waits 0.5 s for the actor, then succeeds
        assert trio.current_time() - start == pytest.approx(1.5)
        nursery.cancel_scope.cancel()
    assert not cache.running


async def test_state_survives_an_actor_restart(autojump_clock: trio.testing.MockClock) -> None:
    """The in-memory store is the facade's (like a Redis server outliving its client)."""
    cache = Cache(CacheSettings())
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.run)
            await cache.incr("n")
            nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        assert await cache.get("n") == b"2"
        nursery.cancel_scope.cancel()


async def test_metrics_hits_misses_and_durations_by_op_and_prefix(cache: Cache) -> None:
    metrics = cache.metrics
    assert metrics is not None
    await cache.set("user:1", b"a")
    await cache.get("user:1")
    with pytest.raises(CacheMiss):
        await cache.get("user:2")
    await cache.mget(["user:1", "room:9", "odd key"])
    assert sample(metrics, "gochat_cache_hits_total", prefix="user") == 2
    assert sample(metrics, "gochat_cache_misses_total", prefix="user") == 1
    assert sample(metrics, "gochat_cache_misses_total", prefix="room") == 1
    assert sample(metrics, "gochat_cache_misses_total", prefix="_other") == 1
    count = "gochat_cache_operation_duration_seconds_count"
    assert sample(metrics, count, op="get", prefix="user") == 2
    assert sample(metrics, count, op="set", prefix="user") == 1
    assert sample(metrics, count, op="mget", prefix="user") == 1


async def test_spec_runs_under_a_supervisor_and_reports_health(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    cache = Cache(CacheSettings(), store=store, probe_interval=1.0)
    spec = cache.spec("cache", shutdown=1.0)
    assert spec.id == "cache"
    assert spec.shutdown == 1.0
    async with open_supervisor([spec]) as sup:
        await cache.set("k", b"v")
        store.take_down()
        await trio.sleep(1.5)
        (info,) = sup.which_children()
        assert info.health is Health.DEGRADED
        assert "down" in info.health_reason
        store.bring_up()
        await trio.sleep(1.0)
        (info,) = sup.which_children()
        assert info.health is Health.OK
    assert not cache.running


async def test_start_fails_when_the_first_ping_hangs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    store.pause()
    cache = Cache(CacheSettings(op_timeout=0.3), store=store)
    with pytest.raises(CacheUnavailable, match=r"no answer to PING within 0\.3s"):
        await cache.run()
    assert not cache.running


async def test_start_fails_when_the_connect_hangs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A connect that never ends (a server that accepts and never answers) fails the
    start within the connect budget: 2 * op_timeout per URL member."""

    @asynccontextmanager
    async def hanging() -> AsyncIterator[Any]:
        await trio.sleep(math.inf)
        yield  # pragma: no cover

    cache = Cache(CacheSettings(op_timeout=0.3), backend=hanging)
    with pytest.raises(CacheUnavailable, match=r"not connected within 0\.6s"):
        await cache.run()
    assert not cache.running


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="CacheSettings"):
        Cache({"url": "memory://"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="store= is for memory://"):
        Cache(CacheSettings(url=Dsn("redis://127.0.0.1:6379/0")), store=MemoryStore())
    with pytest.raises(ValueError, match="probe_interval"):
        Cache(CacheSettings(), probe_interval=0)
    assert Cache(CacheSettings(url=Dsn("redis://127.0.0.1:6379/0"))).store is None
    assert "memory://" in repr(Cache(CacheSettings()))


def test_memory_store_checks_latency() -> None:
    with pytest.raises(ValueError, match="latency"):
        MemoryStore(latency=-1)


# -- issue 27 point 27: strict JSON ------------------------------------------------------
@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
async def test_the_json_codec_refuses_nan_and_infinity(cache: Cache, number: float) -> None:
    """``NaN``/``Infinity`` are not JSON: other services' strict readers reject them."""
    with pytest.raises(ValueError, match=r"json codec cannot encode.*not JSON compliant"):
        await cache.set("k:x", {"score": number}, codec=JSON)
    with pytest.raises(CacheMiss):
        await cache.get("k:x")  # nothing was stored


@pytest.mark.parametrize("text", [b"NaN", b'{"a": Infinity}', b"[-Infinity]"])
async def test_the_json_codec_refuses_to_read_nan_and_infinity(cache: Cache, text: bytes) -> None:
    await cache.set("k:x", text)
    with pytest.raises(CacheError, match="json codec"):
        await cache.get("k:x", codec=JSON)


# -- issue 28: the `if raw is None` -> `if not raw` mutant ---------------------------------
async def test_an_empty_value_round_trips(cache: Cache) -> None:
    """An empty value is a value, not a miss (get, mget, and through a codec)."""
    await cache.set("k:empty", b"")
    assert await cache.get("k:empty") == b""
    assert await cache.get("k:empty", codec=STR) == ""
    assert await cache.mget(["k:empty", "k:absent"]) == [b"", None]
    assert cache.metrics is not None
    assert sample(cache.metrics, "gochat_cache_hits_total", prefix="k") == 3
    assert sample(cache.metrics, "gochat_cache_misses_total", prefix="k") == 1


# -- issue 27 point 28 / issue 22 point 6: what Redis rejects -----------------------------
# The same calls run on Redis in test_cache_redis.py (same errors, same messages).
REJECTED_INTEGERS = [
    b" 5", b"5 ", b"+5", b"1_000", b"007", b"-0", b"-007", b"00", b"", b"-", b"0x10",
    b"1e3", b"5\n", "٣".encode(), b"9223372036854775808", b"-9223372036854775809",
]  # fmt: skip


async def check_rejects_what_redis_rejects(cache: Cache) -> None:
    for raw in REJECTED_INTEGERS:
        await cache.set("n:bad", raw)
        with pytest.raises(CacheError, match="not an integer or out of range"):
            await cache.incr("n:bad")
        assert await cache.get("n:bad") == raw  # untouched
    await cache.set("n:max", b"9223372036854775807")
    assert await cache.incr("n:max", 0) == 2**63 - 1
    with pytest.raises(CacheError, match="would overflow"):
        await cache.incr("n:max")
    await cache.set("n:min", b"-9223372036854775808")
    with pytest.raises(CacheError, match="would overflow"):
        await cache.incr("n:min", -1)
    assert await cache.get("n:min") == b"-9223372036854775808"
    for amount in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(ValueError, match="signed 64-bit"):
            await cache.incr("n:x", amount)
    with pytest.raises(ValueError, match=r"ttl .* beyond what Redis accepts"):
        await cache.set("k:x", b"v", ttl=1e300)
    for call in (
        lambda: cache.get("\ud800"),
        lambda: cache.set("k:\udfff", b"v"),
        lambda: cache.mget(["ok", "\ud800"]),
        lambda: cache.delete("\ud800"),
        lambda: cache.incr("\ud800"),
        lambda: cache.ttl("\ud800"),
    ):
        with pytest.raises(ValueError, match=r"cache key .* not valid UTF-8"):
            await call()
    with pytest.raises(ValueError, match=r"cache.set\('k:x'\): the str codec cannot encode it"):
        await cache.set("k:x", "\ud800")
    with pytest.raises(ValueError, match="json codec cannot encode it"):
        await cache.set("k:x", {"name": "\ud800"}, codec=JSON)
    assert await cache.mget(["k:x", "n:x"]) == [None, None]  # nothing was stored


async def test_memory_rejects_what_redis_rejects(cache: Cache) -> None:
    await check_rejects_what_redis_rejects(cache)


# -- issue 27 point 29: the prefix label is bounded ------------------------------------
def prefixes(metrics: Metrics, family: str) -> set[str]:
    return {
        s.labels["prefix"]
        for f in text_string_to_metric_families(metrics.render().decode())
        for s in f.samples
        if s.name.startswith(family) and "prefix" in s.labels
    }


async def test_the_prefix_label_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    """Keys like ``f"{user_id}:profile"`` made one series per user (1,000 users: 1,000
    series, and as many cached timers): IDs count as ``_other``, and past
    ``max_metric_prefixes`` (64) distinct prefixes so does every new one."""
    metrics = Metrics()
    cache = Cache(CacheSettings(), metrics=metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        for n in range(1000):
            await cache.set(f"{n}:profile", b"v")  # an ID before the first ':'
            await cache.set(f"tenant{n}:profile", b"v")  # 1,000 distinct words
            with pytest.raises(CacheMiss):
                await cache.get(f"tenant{n}:x")
        await cache.get("0:profile")
        nursery.cancel_scope.cancel()
    for family in ("gochat_cache_operation_duration", "gochat_cache_hits", "gochat_cache_misses"):
        seen = prefixes(metrics, family)
        assert len(seen) <= 65, (family, len(seen))
    assert "_other" in prefixes(metrics, "gochat_cache_hits")
    assert prefixes(metrics, "gochat_cache_operation_duration") == {
        "_other",
        *(f"tenant{n}" for n in range(64)),
    }
    assert len(cache._timers) <= 2 * 65
    assert len(cache._lookups) <= 2 * 65


async def test_an_allow_list_names_the_only_prefixes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    metrics = Metrics()
    cache = Cache(CacheSettings(), metrics=metrics, metric_prefixes=["user", "room"])
    small = Metrics()
    capped = Cache(CacheSettings(), metrics=small, max_metric_prefixes=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        await nursery.start(capped.run)
        for key in ("user:1", "room:2", "session:3", "42:x"):
            await cache.set(key, b"v")
            await capped.set(key, b"v")
        nursery.cancel_scope.cancel()
    assert prefixes(metrics, "gochat_cache_operation_duration") == {"user", "room", "_other"}
    assert prefixes(small, "gochat_cache_operation_duration") == {"user", "room", "_other"}
    with pytest.raises(ValueError, match="max_metric_prefixes"):
        Cache(CacheSettings(), max_metric_prefixes=-1)
