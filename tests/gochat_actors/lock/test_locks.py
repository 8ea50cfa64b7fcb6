"""``Locks`` on the in-memory backend under ``autojump_clock``: renewal timing, margins,
the give-up rule, "not the owner", release, waiting, restarts, errors, metrics."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from gochat_actors import (
    Dsn,
    LockLost,
    LockNotAcquired,
    LockUnavailable,
)
from gochat_actors.cache import CacheSettings, MemoryStore
from gochat_actors.lock import Lease, Locks, LockSettings, MemoryLockBackend
from supervisors import Health, open_supervisor
from tests.gochat_actors.lock._support import (
    FENCE,
    KEY,
    MARGIN,
    OP_TIMEOUT,
    TTL,
    make_locks,
    running,
)


def sample(locks: Locks, name: str, **labels: str) -> float:
    assert locks.metrics is not None
    for family in text_string_to_metric_families(locks.metrics.render().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def locks(store: MemoryStore) -> AsyncIterator[Locks]:
    """Running Locks; tests take ``autojump_clock`` themselves (pytest-trio reads the
    clock from the test's own arguments)."""
    locks = make_locks(store)
    async with running(locks):
        yield locks


async def test_lease_token_and_release(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with locks.hold("room:42") as lease:
        assert isinstance(lease, Lease)
        assert lease.token == 1
        assert lease.name == "room:42"
        assert lease.ttl == TTL
        assert lease.held
        assert not lease.lost.is_set()
        assert store.get(KEY) is not None
        lease.check()
    assert store.get(KEY) is None  # released at once
    assert lease.held  # released normally, not lost
    async with locks.hold("room:42", ttl=1.0) as second:
        assert second.token == 2
        assert second.ttl == 1.0


async def test_renews_every_third_of_the_ttl(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with locks.hold("room:42") as lease:
        t0 = lease.acquired_at
        assert lease.deadline == pytest.approx(t0 + TTL - MARGIN)
        await trio.sleep(TTL / 3 - 0.01)
        assert lease.renewals == 0
        await trio.sleep(0.02)
        assert lease.renewals == 1
        assert lease.renewed_at == pytest.approx(t0 + TTL / 3)
        await trio.sleep(TTL + 0.5 - TTL / 3)  # 3.5 s after acquisition
        assert lease.renewals == 3
        assert lease.renewed_at == pytest.approx(t0 + TTL)
        assert lease.deadline == pytest.approx(t0 + 2 * TTL - MARGIN)
        assert store.ttl(KEY) == pytest.approx(TTL - 0.51)


async def test_a_body_ending_as_a_renewal_falls_due_is_not_lost(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """The renewer wakes at ttl/3 in the same tick the body ends: whichever runs first,
    our own release is not taken for a lost lock."""
    for _ in range(30):  # trio shuffles the order of tasks woken together
        async with locks.hold("room:42") as lease:
            await trio.sleep(TTL / 3)
        assert lease.held
        assert store.get(KEY) is None


async def test_margin_defaults_to_a_tenth_of_the_ttl_and_can_be_set(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    locks = make_locks(store, safety_margin=0.25)
    async with running(locks):
        async with locks.hold("a", ttl=10.0) as lease:
            assert lease.margin == 0.25
            assert lease.deadline == pytest.approx(lease.acquired_at + 10.0 - 0.25)
        with pytest.raises(ValueError, match="must be < 2/3 of ttl"):
            async with locks.hold("a", ttl=0.3):
                pass


async def test_hung_server_cancels_the_body_before_the_lock_can_expire(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    seen: dict[str, Any] = {}

    async def holder() -> None:
        async with locks.hold("room:42") as lease:
            seen["lease"] = lease
            await trio.sleep(TTL / 3 + 0.1)  # one renewal done
            assert lease.renewals == 1
            store.pause()  # kill -STOP
            try:
                await trio.sleep_forever()
            finally:
                seen["cancelled_at"] = trio.current_time()
                seen["key_left"] = store.ttl(KEY)

    with pytest.raises(LockLost, match="no renewal") as info:
        await holder()
    lease, cancelled_at = seen["lease"], seen["cancelled_at"]
    assert cancelled_at == pytest.approx(lease.renewed_at + TTL - MARGIN)
    assert cancelled_at < lease.renewed_at + TTL
    assert seen["key_left"] == pytest.approx(MARGIN)  # the key still lived when the body stopped
    assert lease.lost.is_set()
    assert not lease.held
    assert "no renewal" in str(lease.lost_reason)
    assert "token 1" in str(info.value)
    assert sample(locks, "gochat_lock_lost_total", prefix="room") == 1
    store.resume()  # kill -CONT: the next acquire works (the old key has expired by now)
    await trio.sleep(MARGIN)
    async with locks.hold("room:42") as again:
        assert again.token == 2


async def test_the_round_trip_of_the_acquire_is_subtracted(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    store.latency = 0.4  # 0.2 s each way
    sent = trio.current_time()
    seen: dict[str, float] = {}

    async def holder() -> None:
        async with locks.hold("room:42") as lease:
            assert trio.current_time() == pytest.approx(sent + 0.4)  # the reply's time
            assert lease.acquired_at == pytest.approx(sent)  # the request's time
            store.pause()
            try:
                await trio.sleep_forever()
            finally:
                seen["cancelled_at"] = trio.current_time()

    with pytest.raises(LockLost):
        await holder()
    assert seen["cancelled_at"] == pytest.approx(sent + TTL - MARGIN)


async def test_short_outage_is_retried_and_the_lease_kept(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with locks.hold("room:42") as lease:
            store.take_down()
            await trio.sleep(TTL / 3 + 1.0)  # the renewal at 1 s fails, retries meanwhile
            assert lease.renewals == 0
            store.bring_up()
            await trio.sleep(0.5)
            assert lease.renewals == 1
            assert lease.held
            assert lease.deadline > trio.current_time() + 1.0
    assert not lease.lost.is_set()
    events = [entry["event"] for entry in logs]
    assert "lock renewal failed; retrying until the safe deadline" in events
    assert "lock lost" not in events


async def test_unreachable_server_until_the_deadline_loses_the_lease(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    async def holder() -> Lease:
        async with locks.hold("room:42"):
            store.take_down()
            await trio.sleep_forever()
        raise AssertionError("unreachable")

    with structlog.testing.capture_logs() as logs, pytest.raises(LockLost):
        await holder()
    assert trio.current_time() == pytest.approx(TTL - MARGIN)  # release fails at once
    lost = [entry for entry in logs if entry["event"] == "lock lost"]
    assert len(lost) == 1
    assert lost[0]["lock"] == "room:42"
    assert lost[0]["token"] == 1
    assert lost[0]["log_level"] == "warning"


async def test_not_the_owner_any_more_cancels_the_body_at_once(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    async def holder() -> None:
        async with locks.hold("room:42"):
            await trio.sleep(0.5)
            store.set(KEY, b"99:someone-else", 30.0)  # e.g. it expired and was taken
            await trio.sleep_forever()

    with pytest.raises(LockLost, match="no longer ours"):
        await holder()
    assert trio.current_time() == pytest.approx(TTL / 3)  # at the renewal: no waiting
    assert store.get(KEY) == b"99:someone-else"  # never deleted


async def test_cancelled_holder_frees_the_key_at_once(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.move_on_after(1.5) as scope:
        async with locks.hold("room:42"):
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert store.get(KEY) is None
    assert trio.current_time() == pytest.approx(1.5)


async def test_body_exceptions_come_out_as_they_are(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    async def failing() -> None:
        async with locks.hold("room:42"):
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):  # not an ExceptionGroup
        await failing()
    assert store.get(KEY) is None
    leases: list[Lease] = []

    async def lost_then_failing() -> None:
        async with locks.hold("room:42") as lease:
            leases.append(lease)
            store.take_down()
            try:
                await trio.sleep_forever()
            finally:
                store.bring_up()
                raise KeyError("cleanup failed")

    with pytest.raises(KeyError):  # the body's exception wins over LockLost ...
        await lost_then_failing()
    assert leases[0].lost.is_set()  # ... and lease.lost tells


async def test_lost_at_release_is_reported(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    async def holder() -> None:
        async with locks.hold("room:42"):
            store.delete(KEY)

    with pytest.raises(LockLost, match="no longer ours at release"):
        await holder()


async def test_failed_release_is_logged_not_raised(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with locks.hold("room:42") as lease:
            store.take_down()
    assert lease.held
    assert any(entry["event"].startswith("lock release failed") for entry in logs)
    store.bring_up()
    assert store.get(KEY) is not None  # it expires by its TTL
    await trio.sleep(TTL)
    assert store.get(KEY) is None


async def test_not_acquired_after_wait(
    locks: Locks, autojump_clock: trio.testing.MockClock
) -> None:
    async with locks.hold("room:42"):
        start = trio.current_time()
        with pytest.raises(LockNotAcquired, match="held by another owner"):
            async with locks.hold("room:42"):
                pass
        assert trio.current_time() == start  # wait=0: one attempt
        with pytest.raises(LockNotAcquired):
            async with locks.hold("room:42", wait=2.0):
                pass
        assert trio.current_time() == pytest.approx(start + 2.0)


async def test_waiter_gets_the_lock_soon_after_release(
    locks: Locks, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[tuple[float, int]] = []

    async def waiter() -> None:
        async with locks.hold("room:42", wait=5.0) as lease:
            got.append((trio.current_time(), lease.token))

    async with trio.open_nursery() as nursery:
        async with locks.hold("room:42") as first:
            nursery.start_soon(waiter)
            await trio.sleep(1.0)
        released = trio.current_time()
    ((when, token),) = got
    assert released <= when <= released + 0.2 + 1e-9  # the longest pause between attempts
    assert token == first.token + 1


async def test_waiter_wakes_when_a_dead_holders_ttl_runs_out(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with MemoryLockBackend(store).connect() as raw:  # a holder that died
        dead = await raw.acquire("room:42", "dead-owner", 2.0)
    start = trio.current_time()
    async with locks.hold("room:42", wait=10.0) as lease:
        waited = trio.current_time() - start
    assert 2.0 <= waited <= 2.0 + 0.01  # not before its TTL, and at once after
    assert dead.token is not None
    assert lease.token == dead.token + 1


async def test_hold_waits_for_a_restarting_actor(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    locks = make_locks(store)
    start = trio.current_time()
    with pytest.raises(LockUnavailable, match="not running"):
        async with locks.hold("room:42"):  # wait=0: still up to op_timeout for the actor
            pass
    assert trio.current_time() == pytest.approx(start + OP_TIMEOUT)
    with pytest.raises(LockUnavailable):
        async with locks.hold("room:42", wait=2.0):
            pass
    assert trio.current_time() == pytest.approx(start + OP_TIMEOUT + 2.0)

    async def start_later(nursery: trio.Nursery) -> None:
        await trio.sleep(1.0)
        await nursery.start(locks.run)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(start_later, nursery)
        async with locks.hold("room:42", wait=2.0) as lease:
            assert lease.token == 1
        nursery.cancel_scope.cancel()


async def test_renewals_continue_across_an_actor_restart(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    locks = make_locks(store)
    async with trio.open_nursery() as outer:
        actor = await outer.start(_restartable, locks)
        async with locks.hold("room:42") as lease:
            await trio.sleep(0.5)
            actor.cancel()  # the actor stops (its connection closes) ...
            await trio.sleep(1.0)  # ... the renewal due at 1 s waits for it
            assert lease.renewals == 0
            actor = await outer.start(_restartable, locks)  # ... it is back
            await trio.sleep(0.3)
            assert lease.renewals == 1
            await trio.sleep(TTL)
            assert lease.held
        outer.cancel_scope.cancel()


async def _restartable(
    locks: Locks, *, task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(locks.run)
            task_status.started(scope)


async def test_unanswered_acquire_is_undone(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    store.latency = 0.8  # applied after 0.4 s, answered after 0.8 s: past the 0.5 s timeout
    with pytest.raises(LockUnavailable, match="no answer to lock acquire"):
        async with locks.hold("room:42"):
            pass
    assert store.get(FENCE) == b"1"  # it was acquired on the server ...
    with trio.fail_after(OP_TIMEOUT):  # ... and is released again, in the background
        while store.get(KEY) is not None:  # noqa: ASYNC110 (the store has no event)
            await trio.sleep(0.01)


async def test_tokens_strictly_increase_and_holders_never_overlap(
    locks: Locks, autojump_clock: trio.testing.MockClock
) -> None:
    intervals: list[tuple[int, float, float]] = []

    async def contender(n: int) -> None:
        for _ in range(5):
            async with locks.hold("room:42", wait=60.0) as lease:
                start = trio.current_time()
                await trio.sleep(0.01 * (n % 3 + 1))
                intervals.append((lease.token, start, trio.current_time()))

    async with trio.open_nursery() as nursery:
        for n in range(10):
            nursery.start_soon(contender, n)
    intervals.sort(key=lambda i: i[1])
    assert len(intervals) == 50
    for (token_a, _, end_a), (token_b, start_b, _) in itertools.pairwise(intervals):
        assert token_a < token_b
        assert end_a <= start_b


async def test_metrics(locks: Locks, autojump_clock: trio.testing.MockClock) -> None:
    async with locks.hold("room:1"):
        pass
    async with locks.hold("room:2"):
        pass
    assert sample(locks, "gochat_lock_acquired_total", prefix="room") == 2
    assert sample(locks, "gochat_lock_acquire_duration_seconds_count", prefix="room") == 2
    assert sample(locks, "gochat_lock_lost_total", prefix="room") == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": ""}, ValueError, "non-empty str"),
        ({"name": 42}, TypeError, "non-empty str"),
        ({"name": "a", "ttl": 0}, ValueError, "ttl must be"),
        ({"name": "a", "ttl": float("inf")}, ValueError, "ttl must be"),
        ({"name": "a", "ttl": "10"}, TypeError, "ttl must be a number"),
        ({"name": "a", "wait": -1}, ValueError, "wait must be"),
        ({"name": "room:\ud800"}, ValueError, "not valid UTF-8"),  # Redis refuses them too
        ({"name": "a", "ttl": 1e300}, ValueError, "beyond what Redis accepts"),
    ],
)
async def test_bad_input_is_a_clear_typed_error(
    locks: Locks,
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(error, match=match):
        async with locks.hold(**kwargs):
            pass
    async with locks.hold("a"):  # the actor is still up
        pass


def test_url_prefix_and_timeout_come_from_the_cache_settings() -> None:
    redis = Dsn("redis://127.0.0.1:6379/0")
    cache = CacheSettings(url=redis, key_prefix="chat:", op_timeout=0.2)
    locks = Locks(LockSettings(), cache_settings=cache)
    assert locks.url == redis
    assert locks.key_prefix == "chat:"
    assert locks.store is None
    own = Locks(LockSettings(url=Dsn("memory://")), cache_settings=cache)
    assert own.url == Dsn("memory://")
    assert own.store is not None
    assert Locks(LockSettings()).url == Dsn("memory://")
    with pytest.raises(ValueError, match="store= is for memory://"):
        Locks(LockSettings(), cache_settings=cache, store=MemoryStore())
    with pytest.raises(TypeError, match="LockSettings"):
        Locks(cache)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cache_settings"):
        Locks(LockSettings(), cache_settings=LockSettings())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="safety_margin"):
        Locks(LockSettings(), safety_margin=-1.0)
    assert "memory://" in repr(own)


async def test_spec_runs_under_a_supervisor_and_reports_health(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    locks = make_locks(store, probe_interval=1.0)
    spec = locks.spec()
    assert spec.id == "locks"
    async with open_supervisor([spec]) as sup:
        async with locks.hold("room:42"):
            pass
        store.take_down()
        await trio.sleep(1.5)
        (info,) = sup.which_children()
        assert info.health is Health.DEGRADED
        store.bring_up()
        await trio.sleep(1.0)
        (info,) = sup.which_children()
        assert info.health is Health.OK
    assert not locks.running


async def test_cache_and_locks_can_share_one_store(autojump_clock: trio.testing.MockClock) -> None:
    from gochat_actors.cache import Cache

    cache = Cache(CacheSettings(key_prefix="app:"))
    locks = Locks(LockSettings(), cache_settings=cache.settings, store=cache.store)
    async with running(locks), locks.hold("room:42"):
        assert cache.store is not None
        assert cache.store.keys() == ["app:lock:{room:42}:fence", "app:lock:{room:42}"]


# -- issue 27 point 11: a holder blocked past its deadline -----------------------------
async def test_check_and_held_compare_the_clock_with_the_deadline(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """A holder whose loop was blocked past ``lease.deadline`` (no checkpoint: the renewer
    and the cancel scope could not run) must not pass ``check()`` before an irreversible
    step: the key may have expired and someone else may hold it."""
    seen: list[bool] = []

    async def holder() -> None:
        async with locks.hold("room:42") as lease:
            assert lease.held
            lease.check()  # in time: passes
            autojump_clock.jump(TTL)  # blocked for a whole TTL, like a long sync call
            seen.append(lease.held)
            with pytest.raises(LockLost, match="deadline"):
                lease.check()
            seen.append(lease.lost.is_set())

    with pytest.raises(LockLost, match="deadline"):
        await holder()
    assert seen == [False, True]
    assert sample(locks, "gochat_lock_lost_total", prefix="room") == 1


async def test_a_body_that_ran_past_its_deadline_without_yielding_is_lost(
    locks: Locks, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(LockLost, match="no renewal"):
        async with locks.hold("room:42") as lease:
            # past the deadline, the key not yet expired: the release still finds it ours
            autojump_clock.jump(TTL - MARGIN / 2)  # no checkpoint until the body's end
    assert lease.lost.is_set()
    assert sample(locks, "gochat_lock_lost_total", prefix="room") == 1


# -- issue 27 point 12: what bounds hold() ---------------------------------------------
async def test_hold_answers_within_wait_even_when_the_last_attempt_hangs(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """``wait`` bounds ``hold()``: an attempt cut off by it and the release that undoes
    it (in the background) do not make the caller wait longer."""
    async with locks.hold("room:42", ttl=30.0), trio.open_nursery() as nursery:

        async def hang_later() -> None:
            await trio.sleep(0.9)
            store.pause()  # the attempt in flight at 0.9 s never gets an answer

        nursery.start_soon(hang_later)
        start = trio.current_time()
        with pytest.raises(LockNotAcquired):  # the answers it got said "held"
            async with locks.hold("room:42", wait=1.0):
                pass  # pragma: no cover
        assert trio.current_time() - start <= 1.0
        store.resume()


async def test_hold_without_wait_answers_within_one_op_timeout(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    store.pause()
    start = trio.current_time()
    with pytest.raises(LockUnavailable, match="no answer"):
        async with locks.hold("room:42"):
            pass  # pragma: no cover
    assert trio.current_time() - start == pytest.approx(OP_TIMEOUT)
    store.resume()


async def test_the_prefix_label_of_lock_metrics_is_bounded(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """Issue 27 point 29, for locks: names like ``f"{user_id}:inbox"`` or 1,000
    distinct words make at most 65 series per metric."""
    locks = make_locks(store)
    async with running(locks):
        for n in range(1000):
            async with locks.hold(f"{n}:inbox"):
                pass
            async with locks.hold(f"tenant{n}:inbox"):
                pass
    assert locks.metrics is not None
    seen = {
        s.labels["prefix"]
        for f in text_string_to_metric_families(locks.metrics.render().decode())
        for s in f.samples
        if s.name.startswith("gochat_lock_acquired")
    }
    assert seen == {"_other", *(f"tenant{n}" for n in range(64))}
    assert len(locks._metric_children) == 65


# -- issue 28 mutant: renewed_at taken at the renewal's reply instead of its send --------
async def test_a_renewal_counts_from_its_send_not_its_reply(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """With 0.2 s each way, Redis set the new TTL 0.2 s after the renewal was sent and
    the holder learns it 0.4 s after: the safe deadline counts from the send."""
    store.latency = 0.4
    seen: dict[str, float] = {}

    async def holder() -> None:
        async with locks.hold("room:42") as lease:
            t0 = lease.acquired_at
            while lease.renewals < 1:  # noqa: ASYNC110 (no event for a renewal)
                await trio.sleep(0.01)
            assert lease.renewed_at == pytest.approx(t0 + TTL / 3)  # its send time
            assert lease.deadline == pytest.approx(t0 + TTL / 3 + TTL - MARGIN)
            store.pause()
            try:
                await trio.sleep_forever()
            finally:
                seen["cancelled_at"] = trio.current_time()
                seen["sent"] = t0 + TTL / 3

    with pytest.raises(LockLost):
        await holder()
    assert seen["cancelled_at"] == pytest.approx(seen["sent"] + TTL - MARGIN)
