"""Redis Sentinel (``redis+sentinel://``, issue 20): URL checks, and on a private master
+ replica + 3 sentinels (``tests/_clusters.py``) the cache and the locks through a
failover: the master killed with SIGKILL amid a stream of cache writes and lock
acquires; the service recovers without a restart, fencing tokens keep increasing, the
data that reached the replica is there, errors are the typed ones within their timeouts,
and ``/readyz``'s report says not ready while the sentinels have no master."""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import coredis.exceptions
import pydantic
import pytest
import trio
import trio.testing
from coredis.connection import TCPLocation
from typer.testing import CliRunner

from gochat_actors import (
    CacheTimeout,
    CacheUnavailable,
    Dsn,
    LockNotAcquired,
    LockUnavailable,
)
from gochat_actors._redis_sentinel import MasterCheck, SentinelWatch
from gochat_actors._sentinel_url import parse_sentinel_url, sentinel_url_problem
from gochat_actors.cache import Cache, CacheSettings
from gochat_actors.lock import Locks, LockSettings
from supervisors import open_supervisor
from tests._clusters import RedisSentinel, redis_call
from tests.gochat_actors.http._helpers import serving

OP_TIMEOUT = 0.5
SLACK = 0.5  # scheduling on a shared 2-core machine: a hang shows as seconds, not this


# ---- URLs -------------------------------------------------------------------------------


def test_a_sentinel_url_names_sentinels_master_and_db() -> None:
    target = parse_sentinel_url(
        "redis+sentinel://:pw@127.0.0.1:26391,127.0.0.1:26392,[::1]:26393/gmaster/3"
        "?sentinel_password=spw"
    )
    assert target.sentinels == (("127.0.0.1", 26391), ("127.0.0.1", 26392), ("::1", 26393))
    assert (target.master, target.db, target.password) == ("gmaster", 3, "pw")
    assert target.sentinel_password == "spw"
    assert "pw" not in repr(target)
    assert parse_sentinel_url("redis+sentinel://h/m").sentinels == (("h", 26379),)
    assert parse_sentinel_url("redis+sentinel://h/m").db == 0


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel:///gmaster/0", "needs at least one sentinel"),
        ("redis+sentinel://a:1,,b:2/gmaster/0", "empty sentinel"),
        ("redis+sentinel://a:1,b:2", "needs the master's name"),
        ("redis+sentinel://a:1,b:2//0", "needs the master's name"),
        ("redis+sentinel://a:1,b:2/gmaster/x", "database must be a number"),
        ("redis+sentinel://a:1,b:x/gmaster/0", "port must be an integer"),
        ("redis+sentinel://a:1/gmaster/0?db=2", "unknown option 'db'"),
    ],
)
def test_each_bad_part_has_its_one_line_error(url: str, problem: str) -> None:
    assert problem in (sentinel_url_problem(url) or "")
    with pytest.raises(pydantic.ValidationError) as caught:
        CacheSettings.model_validate({"url": url})
    (error,) = caught.value.errors()
    assert problem in error["msg"]
    assert "\n" not in error["msg"]
    with pytest.raises(pydantic.ValidationError):
        LockSettings.model_validate({"url": url})


def test_the_settings_take_a_sentinel_url_and_mask_its_password() -> None:
    settings = CacheSettings(url=Dsn("redis+sentinel://:s3cret@a:1,b:2/gmaster/0"))
    assert settings.url.scheme == "redis+sentinel"
    assert "s3cret" not in str(settings.url)
    assert "s3cret" not in settings.model_dump_json()


def test_check_config_reports_each_bad_sentinel_url_on_one_line(tmp_path: Path) -> None:
    from gochat_actors.cli import app

    path = tmp_path / "chat.toml"
    path.write_text(
        '[cache]\nurl = "redis+sentinel:///gmaster/0"\n'
        '[lock]\nurl = "redis+sentinel://a:1,b:2/gmaster/x"\n'
    )
    result = CliRunner().invoke(app, ["check-config", str(path)])
    assert result.exit_code != 0
    lines = result.output.splitlines()
    assert any("cache" in x and "url" in x and "at least one sentinel" in x for x in lines)
    assert any("lock" in x and "url" in x and "database must be a number" in x for x in lines)


async def _true(value: bool) -> bool:
    await trio.lowlevel.checkpoint()
    return value


async def until(check: Callable[[], Awaitable[bool]], poll: float = 0.05) -> None:
    """Poll ``check`` until it is true (the caller bounds the wait): explicit readiness
    of servers and of the service, observed from outside."""
    while not await check():  # noqa: ASYNC110 (the state is outside this process)
        await trio.sleep(poll)


def test_only_multi_host_schemes_take_a_list_of_hosts() -> None:
    assert Dsn("redis+sentinel://:pw@a:1,b:2/m/0").port is None
    with pytest.raises(ValueError, match="port must be an integer"):
        Dsn("redis://a:1,b:2/0")  # as before: one host


# ---- the sentinels' view, and readiness (fakes, virtual time) ---------------------------


class FakeSentinel:
    """A sentinel client's ``sentinel_master``: a state, an error, or a hang."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    async def sentinel_master(self, name: str) -> dict[str, object]:
        if self.answer == "hang":
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()
        if isinstance(self.answer, Exception):
            raise self.answer
        return cast(dict[str, object], self.answer)


def _watch(*answers: object) -> SentinelWatch:
    sentinel = SimpleNamespace(sentinels=[FakeSentinel(a) for a in answers])
    return SentinelWatch(cast(Any, sentinel), "gmaster", timeout=1.0)


UP = {"flags": b"master", "ip": b"127.0.0.1", "port": 6380}
DOWN = {"flags": b"master,s_down,o_down", "ip": b"127.0.0.1", "port": 6380}


async def test_the_watch_names_why_there_is_no_master(
    autojump_clock: trio.testing.MockClock,
) -> None:
    refused = coredis.exceptions.ConnectionError("refused")
    assert await _watch(refused, UP).no_master() is None  # one sentinel naming it up is enough
    assert await _watch(DOWN, UP).no_master() is None
    assert await _watch(DOWN, refused).no_master() == (
        "Sentinel has no master for 'gmaster': 127.0.0.1:6380 is s_down,o_down"
    )
    unknown = coredis.exceptions.ResponseError("ERR No such master with that name")
    assert "does not know a master named 'gmaster'" in (await _watch(unknown).no_master() or "")
    assert await _watch(refused, refused).no_master() == "no sentinel of 'gmaster' answers"
    start = trio.current_time()
    assert await _watch("hang").no_master() == ("no sentinel of 'gmaster' answered within 1s")
    assert trio.current_time() - start == pytest.approx(1.0)


async def test_the_watch_moves_the_connections_to_a_new_master(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pool = SimpleNamespace(location=TCPLocation("127.0.0.1", 6379), disconnects=0)
    pool.disconnect = lambda: setattr(pool, "disconnects", pool.disconnects + 1)
    sentinel = SimpleNamespace(sentinels=[FakeSentinel(UP)])
    watch = SentinelWatch(cast(Any, sentinel), "gmaster", 1.0, cast(Any, pool))
    assert await watch.check() == MasterCheck(None, moved=True)  # UP is at :6380
    assert (pool.disconnects, pool.location) == (1, None)
    pool.location = TCPLocation("127.0.0.1", 6380)  # the next connection went there
    assert await watch.check() == MasterCheck(None)
    assert pool.disconnects == 1


async def test_confirming_the_master_takes_a_majority_in_agreement(
    autojump_clock: trio.testing.MockClock,
) -> None:
    refused = coredis.exceptions.ConnectionError("refused")
    leading = {"flags": b"master,failover_in_progress", "ip": b"127.0.0.1", "port": 6380}
    elsewhere = {"flags": b"master", "ip": b"127.0.0.1", "port": 6381}
    assert await _watch(UP, UP, refused).confirm() is None
    assert await _watch(UP, refused, refused).confirm() == (
        "1 of 3 sentinels of 'gmaster' answered"
    )
    # the leader of a failover knows first; the others still name the old master, up
    assert await _watch(UP, leading, UP).confirm() == (
        "the sentinels of 'gmaster' name 127.0.0.1:6380, 127.0.0.1:6380 (failover_in_progress)"
    )
    assert "127.0.0.1:6381" in (await _watch(UP, elsewhere, UP).confirm() or "")


class ReadinessBackend:
    """A backend whose servers say why they cannot serve (``why``), and one whose ping
    fails (``down``)."""

    def __init__(self) -> None:
        self.why: str | None = None
        self.down = False

    async def ping(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise CacheUnavailable("PING failed")

    async def not_ready(self) -> str | None:
        await trio.lowlevel.checkpoint()
        return self.why

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_readiness_follows_the_backend_and_recovers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = ReadinessBackend()

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        yield backend

    cache = Cache(CacheSettings(), backend=connect, probe_interval=1.0)
    async with open_supervisor([cache.spec()]) as sup:
        backend.why, backend.down = "Sentinel has no master for 'gmaster': x is s_down", True
        await trio.sleep(1.5)
        report = sup.health()
        assert not report.ready
        assert report.reasons == (
            "cache: failed (Sentinel has no master for 'gmaster': x is s_down)",
        )
        backend.why, backend.down = None, False
        await trio.sleep(1.0)
        assert sup.health().ready
        assert not sup.health().reasons
        backend.down = True  # a failed ping alone: degraded, still ready (as before)
        await trio.sleep(1.0)
        assert sup.health().ready
        assert sup.health().reasons == ("cache: degraded (PING failed)",)


# ---- a failover -------------------------------------------------------------------------


@dataclass
class Stream:
    """What one stream of calls saw: (start, seconds, error type or None) per call."""

    calls: list[tuple[float, float, str | None]] = field(default_factory=list)
    first_success_after_kill: float | None = None

    def record(self, start: float, error: BaseException | None, kill_at: float | None) -> None:
        now = trio.current_time()
        self.calls.append((start, now - start, type(error).__name__ if error else None))
        after_kill = kill_at is not None and start >= kill_at
        if error is None and after_kill and self.first_success_after_kill is None:
            self.first_success_after_kill = now - cast(float, kill_at)

    @property
    def errors(self) -> set[str]:
        return {e for _, _, e in self.calls if e is not None}

    @property
    def longest(self) -> float:
        return max(s for _, s, _ in self.calls)


@pytest.mark.slow
async def test_a_killed_master_fails_over_without_a_restart(
    redis_sentinel: RedisSentinel,
) -> None:
    setup = redis_sentinel
    settings = CacheSettings(url=Dsn(setup.url()), op_timeout=OP_TIMEOUT, key_prefix="t:")
    cache = Cache(settings, probe_interval=0.1)
    locks = Locks(LockSettings(default_ttl=2.0), cache_settings=settings, probe_interval=0.1)
    async with serving(cache.spec(), locks.spec()) as served:
        # Before: 50 keys, known to have reached the replica; some tokens.
        for i in range(50):
            await cache.set(f"before:{i}", f"v{i}".encode())
        tokens: list[int] = []
        for _ in range(3):
            async with locks.hold("fence") as lease:
                tokens.append(lease.token)
        replica = setup.replica()

        def replica_has_them() -> bool:
            return redis_call(replica.address, "GET", "t:before:49") == b"v49"

        await until(lambda: trio.to_thread.run_sync(replica_has_them))
        assert getattr(locks._slot.value, "replicas", None) == 1  # acquires WAIT

        writes, holds = Stream(), Stream()
        acked: list[int] = []
        kill_at: float | None = None
        health: list[tuple[float, bool, tuple[str, ...]]] = []
        stop = trio.Event()

        async def write() -> None:
            i = 0
            while not stop.is_set():
                start = trio.current_time()
                error: BaseException | None = None
                try:
                    await cache.set(f"during:{i}", b"x")
                    acked.append(i)
                except (CacheUnavailable, CacheTimeout) as exc:
                    error = exc
                writes.record(start, error, kill_at)
                i += 1
                await trio.sleep(0.005)  # a steady stream, not a busy loop on errors

        async def hold() -> None:
            while not stop.is_set():
                start = trio.current_time()
                error: BaseException | None = None
                try:
                    async with locks.hold("fence") as lease:
                        tokens.append(lease.token)
                        holds.record(start, None, kill_at)  # acquired: the body starts
                except (LockUnavailable, LockNotAcquired) as exc:
                    error = exc
                    holds.record(start, error, kill_at)
                await trio.sleep(0.005)

        async def watch() -> None:  # /readyz over HTTP
            while not stop.is_set():
                response = await served.client.get("/readyz")
                doc = response.json()
                ready = response.status_code == 200 and doc["ready"] is True
                assert ready or response.status_code == 503
                health.append((trio.current_time(), ready, tuple(doc["reasons"])))
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            nursery.start_soon(hold)
            nursery.start_soon(watch)
            await trio.sleep(0.5)
            tokens_before_kill = len(tokens)
            acked_before_kill = len(acked)
            await trio.to_thread.run_sync(setup.kill_master)  # returns once it is gone
            kill_at = trio.current_time()
            with trio.fail_after(30):
                await until(
                    lambda: _true(
                        None
                        not in (writes.first_success_after_kill, holds.first_success_after_kill)
                    )
                )
                await trio.to_thread.run_sync(setup.wait_failover)
                # ready again, with nothing to report
                await until(lambda: _true(bool(health and health[-1][1] and not health[-1][2])))
                await trio.sleep(0.3)  # a few more calls on the new master
            stop.set()

        # Tokens never went backwards, and some came from the new master.
        assert all(a < b for a, b in itertools.pairwise(tokens)), tokens
        assert len(tokens) > tokens_before_kill
        # Only the typed errors, none later than its timeout.
        assert writes.errors <= {"CacheUnavailable", "CacheTimeout"}, writes.errors
        assert holds.errors <= {"LockUnavailable", "LockNotAcquired"}, holds.errors
        assert writes.longest <= OP_TIMEOUT + SLACK, writes.longest
        assert holds.longest <= OP_TIMEOUT + SLACK, holds.longest
        # What reached the replica is there; count what the master took with it.
        for i in range(50):
            assert await cache.get(f"before:{i}") == f"v{i}".encode()
        lost = [i for i in acked if await _missing(cache, f"during:{i}")]
        # /readyz: not ready, with the reason, while the sentinels had no master.
        reasons = [r for _, ready, rs in health if not ready for r in rs]
        assert any("no master for 'gmaster'" in r for r in reasons), reasons
        not_ready = [t for t, ready, _ in health if not ready]
        print(
            f"\nsentinel failover: cache first success {writes.first_success_after_kill:.2f}s "
            f"after SIGKILL, lock {holds.first_success_after_kill:.2f}s; not ready for "
            f"{(max(not_ready) - min(not_ready)) if not_ready else 0:.2f}s; acked writes lost "
            f"{len(lost)} of {len(acked)} ({acked_before_kill} acked before the kill); "
            f"errors: cache {sorted(writes.errors)}, locks {sorted(holds.errors)}; "
            f"longest call {max(writes.longest, holds.longest):.3f}s; "
            f"reasons: {sorted(set(reasons))}",
            file=sys.stderr,
        )


async def _missing(cache: Cache, key: str) -> bool:
    from gochat_actors import CacheMiss

    try:
        await cache.get(key)
    except CacheMiss:
        return True
    return False


async def test_no_wait_and_no_readiness_problem_while_healthy(
    redis_sentinel: RedisSentinel,
) -> None:
    """On a healthy setup: the watch names no problem; the lock's WAIT returns at once."""
    settings = CacheSettings(url=Dsn(redis_sentinel.url()), op_timeout=OP_TIMEOUT)
    cache = Cache(settings, probe_interval=0.1)
    locks = Locks(LockSettings(), cache_settings=settings)
    async with open_supervisor([cache.spec(), locks.spec()]) as sup:
        await trio.sleep(0.3)  # a few probes
        assert sup.health().ready
        assert not sup.health().reasons
        async with locks.hold("room:1") as lease:
            assert lease.token >= 1
        assert math.isfinite(lease.ttl)


@pytest.mark.slow
async def test_a_manual_failover_moves_the_calls_to_the_new_master(
    redis_sentinel: RedisSentinel,
) -> None:
    """``SENTINEL FAILOVER``: the old master lives on (until the sentinels demote it and
    close its clients); the cache and the locks move to the new master, and the tokens
    keep increasing (no acquire on the old master once its replica is promoted)."""
    setup = redis_sentinel
    settings = CacheSettings(url=Dsn(setup.url()), op_timeout=OP_TIMEOUT)
    cache = Cache(settings, probe_interval=0.1)
    locks = Locks(LockSettings(default_ttl=2.0), cache_settings=settings, probe_interval=0.1)
    tokens: list[int] = []
    errors: set[str] = set()

    async def step(i: int) -> None:
        try:
            await cache.set("k", str(i).encode())
            async with locks.hold("room") as lease:
                tokens.append(lease.token)
        except (CacheUnavailable, CacheTimeout, LockUnavailable, LockNotAcquired) as exc:
            errors.add(type(exc).__name__)
        await trio.sleep(0.01)

    async with open_supervisor([cache.spec(), locks.spec()]):
        for i in range(20):
            await step(i)
        old = setup.master_address()
        setup._killed = old  # wait_failover: wait for a master other than this one
        sentinel = setup.sentinels[0].address
        with trio.fail_after(30):  # NOGOODSLAVE until this sentinel has seen the replica ok
            while True:
                try:
                    await trio.to_thread.run_sync(
                        redis_call, sentinel, "SENTINEL", "failover", "gmaster"
                    )
                    break
                except RuntimeError as exc:
                    if "NOGOODSLAVE" not in str(exc):
                        raise
                await trio.sleep(0.2)  # polling the sentinel's readiness, bounded above
        async with trio.open_nursery() as nursery:
            done = trio.Event()

            async def stream() -> None:
                i = 100
                while not done.is_set():
                    await step(i)
                    i += 1

            nursery.start_soon(stream)
            new = await trio.to_thread.run_sync(setup.wait_failover)
            assert new != old
            with trio.fail_after(30):  # the writes land on the new master
                await until(
                    lambda: trio.to_thread.run_sync(
                        lambda: int(cast(bytes, redis_call(new, "GET", "k") or b"0")) >= 100
                    )
                )
            tokens_at_switch = len(tokens)
            with trio.fail_after(30):
                await until(lambda: _true(len(tokens) > tokens_at_switch + 5))
            done.set()
        assert all(a < b for a, b in itertools.pairwise(tokens)), (str(tokens), errors)
        assert errors <= {"CacheUnavailable", "CacheTimeout", "LockUnavailable", "LockNotAcquired"}
        last = tokens[-1]
    # The fence counter on the new master is past every token handed out.
    assert int(cast(bytes, redis_call(new, "GET", "lock:{room}:fence"))) >= last


@pytest.mark.slow
async def test_a_paused_master_fails_over_and_calls_time_out_meanwhile(
    redis_sentinel: RedisSentinel,
) -> None:
    """SIGSTOP of the master (a hang: its connections stay open, nothing answers):
    calls fail typed within their timeout, the sentinels promote the replica, and the
    probe moves the connections there (they would wait on the paused one forever)."""
    setup = redis_sentinel
    settings = CacheSettings(url=Dsn(setup.url()), op_timeout=OP_TIMEOUT)
    cache = Cache(settings, probe_interval=0.1)
    locks = Locks(LockSettings(default_ttl=2.0), cache_settings=settings, probe_interval=0.1)
    tokens: list[int] = []
    calls = Stream()
    async with open_supervisor([cache.spec(), locks.spec()]):
        async with locks.hold("room") as lease:
            tokens.append(lease.token)
        await cache.set("k", b"before")
        master = setup.master()
        await trio.to_thread.run_sync(master.pause)
        paused_at = trio.current_time()
        with trio.fail_after(30):
            while calls.first_success_after_kill is None or len(tokens) < 5:
                start = trio.current_time()
                error: BaseException | None = None
                try:
                    await cache.set("k", b"after")
                    async with locks.hold("room") as lease:
                        tokens.append(lease.token)
                except (CacheUnavailable, CacheTimeout, LockUnavailable, LockNotAcquired) as exc:
                    error = exc
                calls.record(start, error, paused_at)
                await trio.sleep(0.01)
        assert await cache.get("k") == b"after"
    assert all(a < b for a, b in itertools.pairwise(tokens)), tokens
    assert "CacheTimeout" in calls.errors  # the hang is seen as one
    assert calls.errors <= {
        "CacheTimeout",
        "CacheUnavailable",
        "LockUnavailable",
        "LockNotAcquired",
    }
    # one step is a cache call and a hold: each bounded by the op timeout
    assert calls.longest <= 2 * OP_TIMEOUT + SLACK, calls.longest
    print(
        f"\nsentinel, master paused: first success {calls.first_success_after_kill:.2f}s "
        f"after SIGSTOP; errors {sorted(calls.errors)}; longest step {calls.longest:.3f}s",
        file=sys.stderr,
    )
