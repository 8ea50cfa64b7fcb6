"""The Sentinel lock backend's ``WAIT`` path on a fake coredis client, under
``autojump_clock``: no WAIT without replicas; a shortfall undoes the acquire and raises
``LockUnavailable``; a hold cancelled (or timed out) at each await leaves no lock behind."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import coredis
import coredis.exceptions
import pytest
import trio
import trio.testing
from coredis.exceptions import NoScriptError, ReplicationError
from coredis.response.types import RoleInfo

from gochat_actors import LockUnavailable
from gochat_actors._redis_sentinel import MasterCheck
from gochat_actors.cache import CacheSettings
from gochat_actors.lock import LockBackend, Locks, LockSettings, lock_keys
from gochat_actors.lock._redis import _SHA, ACQUIRE, RELEASE, RENEW
from gochat_actors.lock._sentinel import SentinelLockBackend

OP_TIMEOUT = 1.0
WAIT = 0.5
GRACE = 2.0  # FakeWatch's down-after (1 s) and the sentinels' ping period (1 s)
KEY, FENCE = lock_keys("", "room:42")
_SCRIPTS = {sha: script for script, sha in _SHA.items()}


class FakeWatch:
    """The sentinels' answer: ``problem`` (None: the master is up where we connect)."""

    def __init__(self) -> None:
        self.problem: str | None = None
        self.checks = 0
        self.down_after: float | None = 1.0  # the sentinels' down-after-milliseconds (s)

    async def check(self) -> MasterCheck:
        await trio.lowlevel.checkpoint()
        return MasterCheck(self.problem)

    async def confirm(self) -> str | None:
        await trio.lowlevel.checkpoint()
        self.checks += 1
        return self.problem


class FakeRedis:
    """What the lock backend uses of a coredis client: EVALSHA of its three scripts (run
    here in Python on the trio clock), ROLE, PING and ``ensure_replication`` (a WAIT after
    the command, answered by ``acks``). ``block_once`` names the await that hangs, once:
    ``role``, ``send`` (before the script runs), ``wait`` (after it ran) or ``release``."""

    def __init__(self, replicas: int = 1, *, acks: bool = True) -> None:
        self.replicas = replicas
        self.acks = acks
        self.block_once: str | None = None
        self.refuse = False  # every EVALSHA: connection refused (a dead master)
        self.waits = 0
        self.data: dict[str, tuple[str, float | None]] = {}
        self._wait: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
            "wait", default=None
        )
        self.connection_pool = self  # aclose() calls connection_pool.disconnect()

    def disconnect(self) -> None:
        pass

    async def _point(self, name: str) -> None:
        if self.block_once == name:
            self.block_once = None
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()

    @contextlib.contextmanager
    def ensure_replication(self, replicas: int, timeout_ms: int) -> Iterator[FakeRedis]:
        token = self._wait.set((replicas, timeout_ms))
        try:
            yield self
        finally:
            self._wait.reset(token)

    async def role(self) -> RoleInfo:
        await self._point("role")
        return RoleInfo("master", 0, None, tuple({} for _ in range(self.replicas)))

    async def ping(self) -> bool:
        await trio.lowlevel.checkpoint()
        return True

    async def script_load(self, script: str) -> str:  # pragma: no cover - all known
        raise AssertionError("scripts are known")

    def _get(self, key: str) -> str | None:
        item = self.data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and trio.current_time() >= expires:
            del self.data[key]
            return None
        return value

    def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        held = self._get(keys[0])
        owner = str(args[0])
        now = trio.current_time()
        if script is ACQUIRE:
            ttl = int(args[1]) / 1000
            if held is not None:
                token, _, holder = held.partition(":")
                if holder == owner:
                    self.data[keys[0]] = (held, now + ttl)
                    return [1, int(token)]
                return [0, 1000]
            fence = int(self._get(keys[1]) or 0) + 1
            self.data[keys[1]] = (str(fence), None)
            self.data[keys[0]] = (f"{fence}:{owner}", now + ttl)
            return [1, fence]
        ours = held is not None and held.endswith(":" + owner)
        if script is RENEW:
            if ours:
                self.data[keys[0]] = (cast(str, held), now + int(args[1]) / 1000)
            return int(ours)
        if ours:
            del self.data[keys[0]]
        return int(ours)

    async def evalsha(self, sha: str, keys: list[str], args: list[Any]) -> Any:
        script = _SCRIPTS.get(sha)
        if script is None:  # pragma: no cover
            raise NoScriptError("unknown")
        await self._point("release" if script is RELEASE else "send")
        if self.refuse:
            raise coredis.exceptions.ConnectionError("refused")
        reply = self._run(script, keys, args)
        wait = self._wait.get()
        if wait is not None:
            self.waits += 1
            await self._point("wait")
            if not self.acks:
                await trio.sleep(wait[1] / 1000)
                raise ReplicationError(b"EVALSHA", wait[0], wait[1])
        return reply

    def holder(self) -> str | None:
        return self._get(KEY)


def backend_on(fake: FakeRedis, watch: FakeWatch | None = None) -> SentinelLockBackend:
    client = cast("coredis.Redis[bytes]", fake)
    watch = FakeWatch() if watch is None else watch
    return SentinelLockBackend(client, cast(Any, watch), replica_timeout=WAIT)


async def test_no_replicas_no_wait(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeRedis(replicas=0)
    backend = backend_on(fake)
    result = await backend.acquire("room:42", "a", 5.0)
    assert result.token == 1
    assert await backend.renew("room:42", "a", 5.0)
    assert fake.waits == 0
    assert backend.replicas == 0


async def test_a_failed_call_counts_the_replicas_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failover may give a master with replicas where there was none (and back)."""
    fake = FakeRedis(replicas=0)
    backend = backend_on(fake)
    await backend.acquire("room:42", "a", 5.0)
    assert backend.replicas == 0
    fake.refuse = True
    with pytest.raises(LockUnavailable):
        await backend.acquire("room:42", "b", 5.0)
    counted: int | None = backend.replicas  # (a new name: mypy narrowed the property)
    assert counted is None
    fake.refuse, fake.replicas = False, 1
    await backend.release("room:42", "a")
    assert (await backend.acquire("room:42", "b", 5.0)).token == 2
    assert (backend.replicas, fake.waits) == (1, 1)


async def test_with_a_replica_acquire_and_renew_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeRedis(replicas=1)
    backend = backend_on(fake)
    assert (await backend.acquire("room:42", "a", 5.0)).token == 1
    assert await backend.renew("room:42", "a", 5.0)
    assert await backend.release("room:42", "a")  # release: no WAIT
    assert fake.waits == 2


async def test_a_shortfall_undoes_the_acquire(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeRedis(replicas=1, acks=False)
    backend = backend_on(fake)
    await backend.ping()  # counts the replicas, as the actor's first probe does
    start = trio.current_time()
    with pytest.raises(LockUnavailable, match="no replica confirmed") as caught:
        await backend.acquire("room:42", "a", 5.0)
    assert isinstance(caught.value.__cause__, ReplicationError)
    assert trio.current_time() - start == pytest.approx(WAIT)  # the WAIT's bound, no more
    assert fake.holder() is None  # released
    assert backend.replicas is None  # counted again before the next call
    fake.replicas, fake.acks = 0, True  # the replica is gone for good
    # not at once: the sentinels still name a cut-off master up for down-after
    with pytest.raises(LockUnavailable, match="cannot tell a dead replica"):
        await backend.acquire("room:42", "b", 5.0)
    await trio.sleep(GRACE)  # the sentinels would have seen a cut-off master by now
    assert (await backend.acquire("room:42", "b", 5.0)).token == 2  # plain acquires
    assert fake.waits == 1


async def test_losing_the_replicas_needs_the_sentinels_word(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A master whose replica left may be the one about to be demoted (the replica was
    promoted): no plain acquire on it until the sentinels name it the master."""
    fake, watch = FakeRedis(replicas=1), FakeWatch()
    backend = backend_on(fake, watch)
    await backend.ping()
    assert watch.checks == 0  # a master with its replica: nothing to ask
    fake.replicas = 0
    watch.problem = "Sentinel has no master for 'gmaster': 127.0.0.1:1 is failover_in_progress"
    with pytest.raises(LockUnavailable, match=r"lost its replicas: .*failover_in_progress"):
        await backend.ping()
    backend._replicas = None
    with pytest.raises(LockUnavailable, match="lost its replicas"):
        await backend.acquire("room:42", "a", 5.0)
    assert fake.holder() is None  # nothing was sent
    watch.problem = None  # the sentinels still name it: the replica died, or they are late
    with pytest.raises(LockUnavailable, match="cannot tell a dead replica"):
        await backend.acquire("room:42", "a", 5.0)
    await trio.sleep(GRACE)  # they had down-after to see a cut-off master: the replica died
    assert (await backend.acquire("room:42", "a", 5.0)).token == 1
    assert backend.replicas == 0
    assert fake.waits == 0
    checks = watch.checks
    await backend.ping()
    assert watch.checks == checks  # no replica before either: nothing to ask


async def test_a_renewal_shortfall_is_transient(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeRedis(replicas=1)
    backend = backend_on(fake)
    await backend.acquire("room:42", "a", 5.0)
    fake.acks = False
    with pytest.raises(LockUnavailable, match="lock renew"):
        await backend.renew("room:42", "a", 5.0)
    assert fake.holder() == "1:a"  # still ours: the renewer retries until its deadline


@contextlib.asynccontextmanager
async def running_locks(fake: FakeRedis) -> AsyncIterator[Locks]:
    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[LockBackend]:
        yield backend_on(fake)

    locks = Locks(
        LockSettings(),
        cache_settings=CacheSettings(op_timeout=OP_TIMEOUT),
        backend=connect,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(locks.run)
        yield locks
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("point", ["role", "send", "wait", "release"])
@pytest.mark.parametrize("how", ["cancelled", "timed-out"])
async def test_a_hold_stopped_at_each_await_leaves_no_lock(
    point: str, how: str, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeRedis(replicas=1, acks=point != "release")  # release: only after a shortfall
    async with running_locks(fake) as locks:
        backend = cast(SentinelLockBackend, locks._slot.value)
        backend._replicas = None  # counted again by the acquire: the ROLE await
        fake.block_once = point
        start = trio.current_time()
        outcome = "entered"
        cancel_at = (0.7 if point == "release" else 0.1) if how == "cancelled" else 60.0
        with trio.move_on_after(cancel_at):
            outcome = "cancelled"
            try:
                async with locks.hold("room:42", ttl=5.0):
                    outcome = "entered"
            except LockUnavailable:
                outcome = "unavailable"
        took = trio.current_time() - start
        expected = "cancelled" if how == "cancelled" else "unavailable"
        assert outcome == expected, point
        assert took <= OP_TIMEOUT  # hold() answers within max(wait, op_timeout)
        await trio.sleep(2 * OP_TIMEOUT)  # the actor's background release runs
        assert fake.holder() is None, point  # never left held past its undo
        assert fake._wait.get() is None
        fake.acks = True
        async with locks.hold("room:42", ttl=5.0) as lease:  # free for the next holder
            assert lease.token >= 1


async def test_the_grace_is_for_the_server_the_replicas_left(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After a failover the promoted master has no replica yet: nothing of it can be
    promoted over it, so the sentinels' word is enough there."""
    fake, watch = FakeRedis(replicas=1), FakeWatch()
    fake.location = "old:6379"  # type: ignore[attr-defined]
    backend = backend_on(fake, watch)
    await backend.ping()
    fake.replicas, fake.location = 0, "new:6379"  # type: ignore[attr-defined]
    await backend.ping()  # the sentinels confirm the new master: no grace
    assert (await backend.acquire("room:42", "a", 5.0)).token == 1
    assert watch.checks == 1


async def test_the_grace_defaults_to_redis_down_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake, watch = FakeRedis(replicas=1), FakeWatch()
    watch.down_after = None  # the sentinels never said
    backend = backend_on(fake, watch)
    await backend.ping()
    fake.replicas = 0
    with pytest.raises(LockUnavailable, match="for 31s"):
        await backend.ping()
    await trio.sleep(31)
    await backend.ping()
    assert backend.replicas == 0
