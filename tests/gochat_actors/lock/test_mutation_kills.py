"""Tests written for the survivors of the mutation run of ``gochat_actors/lock``
(``make mutants MODULE=gochat_actors/lock``; see docs/testing.md, "Mutation runs", and
docs/mutants.md). Each test names the mutants it kills (``_locks.py`` unless said
otherwise); each was seen failing with its mutants and passing without, with
``scripts/mutants.py gochat_actors/lock --tests ... --check "" MUTANT...``.

In-memory backend under ``autojump_clock``: no sleeps in real time, no timing bounds.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from gochat_actors import LockLost, LockNotAcquired, LockUnavailable
from gochat_actors.cache import CacheSettings, MemoryStore
from gochat_actors.lock import Lease, Locks, LockSettings, MemoryLockBackend, lock_keys
from gochat_actors.lock._protocol import AcquireResult
from tests.gochat_actors.lock._support import (
    KEY,
    MARGIN,
    OP_TIMEOUT,
    TTL,
    make_locks,
    running,
)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def locks(store: MemoryStore) -> AsyncIterator[Locks]:
    locks = make_locks(store)
    async with running(locks):
        yield locks


async def test_lease_repr_tells_the_lock_token_ttl_and_state(
    locks: Locks, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``Lease.__repr__`` 1-5 (no test called it), ``Lease.__init__`` 17, 18, 19
    (the last error before any), 22 (``_on_lost`` not None) and ``Lease.check`` 11 (the
    reason of a Lease made by hand)."""
    async with locks.hold("room:42") as lease:
        assert repr(lease) == "<Lease 'room:42' token=1 ttl=3 held>"
    by_hand = Lease("a", 7, ttl=2.5, margin=0.5, acquired_at=trio.current_time(), owner="o")
    autojump_clock.jump(2.0)
    with pytest.raises(LockLost):
        by_hand.check()
    assert repr(by_hand) == (
        "<Lease 'a' token=7 ttl=2.5 lost: no renewal for 2s, the safe deadline (last error: none)>"
    )


async def test_a_shielded_body_is_lost_by_the_renewer_with_the_reason_and_last_error(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """A body that shields itself from the cancellation outlives its deadline: the
    renewer's own deadline check marks the lease lost, naming the safe time (ttl -
    margin) and the last error. Kills ``_overdue`` 1 (ttl + margin), ``Locks._renew``
    7, 8, 9, 10 (the renewer's ``_lose`` call broken: no reason, or a crash), 27, 28
    (the last error dropped or mistyped) and ``Locks._lose`` 8, 12 (the logged reason)."""
    seen: dict[str, Any] = {}

    async def holder() -> None:
        async with locks.hold("room:42") as lease:
            store.take_down()
            with trio.CancelScope(shield=True):
                await lease.lost.wait()
                seen["lost_at"] = trio.current_time()
                seen["reason"] = lease.lost_reason

    with structlog.testing.capture_logs() as logs, pytest.raises(LockLost):
        await holder()
    assert seen["lost_at"] == pytest.approx(TTL - MARGIN)  # the renewer's check, at once
    reason = seen["reason"]
    assert isinstance(reason, str)
    assert reason.startswith(
        "no renewal for 2.7s, the safe deadline (last error: LockUnavailable: "
    ), reason
    (lost,) = [entry for entry in logs if entry["event"] == "lock lost"]
    assert lost["reason"] == reason
    assert lost["token"] == 1


async def test_a_lock_taken_by_another_owner_is_not_released_again(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """The renewal that finds the lock taken marks it gone: the release makes no round
    trip (it could only fail, or worse with a backend that did not compare). Kills
    ``Locks._renew`` 32, 35, 38 (``gone=`` dropped), 36 (its reason) and ``Locks._lose``
    2, 3 (``gone`` forgotten)."""

    async def holder() -> None:
        async with locks.hold("room:42"):
            await trio.sleep(0.5)
            store.set(KEY, b"99:someone-else", 30.0)
            seen["before"] = store.round_trips
            await trio.sleep_forever()

    seen: dict[str, int] = {}
    with pytest.raises(
        LockLost, match=r"\) lost: the lock is no longer ours \(expired or taken\)$"
    ):
        await holder()
    assert store.round_trips - seen["before"] == 1  # the renewal, and no release
    assert store.get(KEY) == b"99:someone-else"


async def test_a_lease_lost_to_its_deadline_still_releases_the_key(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """Lost by the clock is not "gone": the key may still be ours, and the release
    deletes it at once instead of leaving it to expire. Kills ``Locks._lose`` 1 (``gone``
    defaulting to True)."""
    with pytest.raises(LockLost, match="no renewal"):
        async with locks.hold("room:42"):
            autojump_clock.jump(TTL - MARGIN / 2)  # past the deadline, before expiry
    assert store.get(KEY) is None


async def test_an_unanswered_acquire_with_the_actor_gone_is_left_to_its_ttl(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """The actor stops while an acquire hangs: nothing can undo it, which is logged.
    Kills ``Locks._release_later`` 3-9."""
    locks = make_locks(store)
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            actor = trio.CancelScope()

            async def run_actor() -> None:
                with actor:
                    await locks.run()

            nursery.start_soon(run_actor)
            while not locks.running:  # noqa: ASYNC110 (no event for it)
                await trio.sleep(0.01)
            store.pause()

            async def stop_actor() -> None:
                await trio.sleep(OP_TIMEOUT / 2)
                actor.cancel()

            nursery.start_soon(stop_actor)
            with pytest.raises(LockUnavailable, match="no answer"):
                async with locks.hold("room:42"):
                    pass  # pragma: no cover
    store.resume()
    gave_up = [e for e in logs if e["event"] == "lock acquire got no answer; it expires by its TTL"]
    assert gave_up == [
        {
            "event": "lock acquire got no answer; it expires by its TTL",
            "lock": "room:42",
            "log_level": "warning",
        }
    ]


def sample(locks: Locks, name: str, **labels: str) -> float:
    assert locks.metrics is not None
    for family in text_string_to_metric_families(locks.metrics.render().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


async def test_a_fresh_lease_has_no_lost_reason(
    locks: Locks, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``Lease.__init__`` 10 (``lost_reason`` "" instead of None)."""
    async with locks.hold("room:42") as lease:
        assert lease.lost_reason is None
    assert lease.lost_reason is None


async def test_the_acquire_duration_is_the_time_hold_waited(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``Locks._acquired`` 19 (now + start: invisible at time 0, so not at 0)."""
    await trio.sleep(10.0)
    store.latency = 0.4
    async with locks.hold("room:42"):
        pass
    assert sample(locks, "gochat_lock_acquire_duration_seconds_sum", prefix="room") == (
        pytest.approx(0.4)
    )


async def test_the_labelled_metrics_of_a_prefix_are_looked_up_once(
    locks: Locks, autojump_clock: trio.testing.MockClock
) -> None:
    """``labels()`` is slow: the pair is cached per prefix. Kills ``Locks._children`` 3,
    4, 10 (the cache never read, or filled with None)."""
    first = locks._children("room:1")
    assert locks._children("room:2") is first  # same prefix "room"
    assert locks._children("user:1") is not first


async def test_a_body_ending_amid_a_hung_renewal_stops_the_renewer(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """The body ends while a renewal waits for a hung server: the renewer is cancelled,
    the release gets its op timeout, and the lease ends normally. Not cancelled, the
    renewer would retry until the deadline and then call the lease lost. Kills
    ``Locks._keep`` 6, 7 (``_renewing`` not set during a renewal)."""
    async with locks.hold("room:42") as lease:
        await trio.sleep(TTL / 3 - 0.1)
        store.pause()
        await trio.sleep(0.2)  # the renewal at TTL / 3 hangs
        assert lease._renewing
        ended = trio.current_time()
    assert trio.current_time() == pytest.approx(ended + OP_TIMEOUT)  # the release's bound
    assert not lease.lost.is_set()
    assert lease.renewals == 0
    store.resume()


async def test_a_crashed_renewer_loses_the_lease_and_logs_it(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """A bug in the renewer (here, a backend raising what is not a LockError) must lose
    the lease, not leave it unrenewed and held. Kills ``Locks._keep`` 11-21."""

    class Broken(MemoryLockBackend):
        async def renew(self, name: str, owner: str, ttl: float) -> bool:
            raise RuntimeError("boom")

    locks = Locks(
        LockSettings(default_ttl=TTL),
        cache_settings=CacheSettings(op_timeout=OP_TIMEOUT),
        backend=Broken(store).connect,
    )
    seen: dict[str, Any] = {}

    async def holder() -> None:
        async with locks.hold("room:42") as lease:
            await lease.lost.wait()
            seen["lost_at"] = trio.current_time()
            seen["reason"] = lease.lost_reason

    async with running(locks):
        with structlog.testing.capture_logs() as logs, pytest.raises(LockLost):
            await holder()
    assert seen == {
        "lost_at": pytest.approx(TTL / 3),
        "reason": "the renewer crashed: RuntimeError: boom",
    }
    (crash,) = [e for e in logs if e["log_level"] == "error"]
    assert crash["event"] == "lock renewer crashed"
    assert crash["lock"] == "room:42"
    assert crash["token"] == 1
    assert crash["exc_info"] is True


@pytest.fixture
def mid_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """``random.uniform`` gives the middle of its range: the jittered pauses are fixed."""
    monkeypatch.setattr(random, "uniform", lambda a, b: (a + b) / 2)


async def test_failed_renewals_are_retried_every_fifteenth_of_the_ttl_jittered(
    store: MemoryStore, mid_jitter: None, autojump_clock: trio.testing.MockClock
) -> None:
    """Retries of a failing renewal come every ``min(ttl / 15, 0.5)`` s times a jitter in
    [0.5, 1] (here its middle, 0.75): often enough to renew well before the deadline,
    not so often as to hammer a struggling server. Kills ``Locks._renew`` 83, 89, 90,
    95, 96."""
    attempts: list[float] = []

    class Recording(MemoryLockBackend):
        async def renew(self, name: str, owner: str, ttl: float) -> bool:
            attempts.append(trio.current_time())
            return await super().renew(name, owner, ttl)

    locks = Locks(
        LockSettings(default_ttl=TTL),
        cache_settings=CacheSettings(op_timeout=OP_TIMEOUT),
        backend=Recording(store).connect,
    )
    async with running(locks):
        for ttl, pause in [(TTL, TTL / 15 * 0.75), (30.0, 0.5 * 0.75)]:
            attempts.clear()
            async with locks.hold("room:42", ttl=ttl) as lease:
                store.take_down()
                await trio.sleep(ttl / 3 + 3.5 * pause)  # four attempts
            store.bring_up()
            start = lease.acquired_at + ttl / 3
            assert attempts == pytest.approx([start + n * pause for n in range(4)])
            await trio.sleep(ttl)  # the old key expires


async def test_renewal_failures_warn_once_and_the_recovery_is_logged(
    store: MemoryStore, mid_jitter: None, autojump_clock: trio.testing.MockClock
) -> None:
    """The first failed renewal warns (with the error and the seconds left before the
    body is cancelled), the next ones do not; the renewal that succeeds after failures
    says how many. The margin makes the seconds left 1.7004, rounded to 3 digits.
    Kills ``Locks._renew`` 45-51, 59, 62, 63, 65-73, 77-81."""
    locks = make_locks(store, safety_margin=0.2996)
    async with running(locks):
        with structlog.testing.capture_logs() as logs:
            async with locks.hold("room:42") as lease:
                store.take_down()  # the renewal at 1.0 fails, and its retries
                await trio.sleep(TTL / 3 + 0.5)  # retries at 1.15, 1.3, 1.45
                store.bring_up()
                await trio.sleep(0.2)  # the retry at 1.6 succeeds
                assert lease.renewals == 1
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert warned == [
        {
            "event": "lock renewal failed; retrying until the safe deadline",
            "lock": "room:42",
            "token": 1,
            "error": "LockUnavailable: the in-memory store is down (simulated)",
            "seconds_left": 1.7,
            "log_level": "warning",
        }
    ]
    again = [e for e in logs if e["event"] == "lock renewed again"]
    assert again == [
        {"event": "lock renewed again", "lock": "room:42", "failures": 4, "log_level": "info"}
    ]


async def test_the_last_error_of_a_hung_server_is_the_cut_short_wait(
    locks: Locks, store: MemoryStore, mid_jitter: None, autojump_clock: trio.testing.MockClock
) -> None:
    """Against a hung server each renewal waits for the op timeout, the last one only
    until the deadline, which the lost reason tells. Kills ``Locks._renew`` 57, 58."""

    seen: dict[str, Any] = {}

    async def holder() -> None:
        async with locks.hold("room:42") as lease:
            store.pause()
            with trio.CancelScope(shield=True):  # the renewer marks it lost, not hold()
                await lease.lost.wait()
                seen["reason"] = lease.lost_reason

    with pytest.raises(LockLost):
        await holder()
    store.resume()
    # attempts at 1.0 (to 1.5), 1.65 (to 2.15), 2.3, cut short at the deadline 2.7
    assert seen["reason"].endswith("(last error: no answer within 0.4s)"), seen


class Recording(MemoryLockBackend):
    """The memory backend noting when each acquire is sent (a runaway retry loop fails
    the test instead of spinning: with no pause, the mock clock never moves)."""

    acquires: list[float]

    async def acquire(self, name: str, owner: str, ttl: float) -> AcquireResult:
        self.acquires.append(trio.current_time())
        if len(self.acquires) > 100:
            raise AssertionError("acquire retried without pause")
        return await super().acquire(name, owner, ttl)


def recording_locks(store: MemoryStore) -> tuple[Locks, list[float]]:
    acquires: list[float] = []
    backend = type("Rec", (Recording,), {"acquires": acquires})
    locks = Locks(
        LockSettings(default_ttl=TTL),
        cache_settings=CacheSettings(op_timeout=OP_TIMEOUT),
        backend=backend(store).connect,
    )
    return locks, acquires


# Attempts of hold(wait=1.0) on a held lock, mid jitter: pauses 0.75 x (0.01, 0.02, 0.04,
# 0.08, 0.16, then 0.2 ...), the last one cut to end at the 1.0 s bound.
ATTEMPTS = [0, 0.0075, 0.0225, 0.0525, 0.1125, 0.2325, 0.3825, 0.5325, 0.6825, 0.8325, 0.9825]


async def test_acquire_retries_back_off_to_the_longest_pause(
    store: MemoryStore, mid_jitter: None, autojump_clock: trio.testing.MockClock
) -> None:
    """Acquire attempts against a held lock: the pause starts at 0.01 s, doubles up to
    0.2 s, is jittered in [0.5, 1] (here 0.75), and no attempt is made at the bound.
    Kills ``Locks._acquire`` 87, 93, 108, 110."""
    locks, acquires = recording_locks(store)
    async with running(locks), locks.hold("room:42", ttl=30.0):
        acquires.clear()
        start = trio.current_time()
        with pytest.raises(LockNotAcquired):
            async with locks.hold("room:42", wait=1.0):
                pass  # pragma: no cover
    assert [t - start for t in acquires] == pytest.approx(ATTEMPTS)


async def test_a_last_attempt_cut_short_by_wait_keeps_the_earlier_answers(
    store: MemoryStore, mid_jitter: None, autojump_clock: trio.testing.MockClock
) -> None:
    """The attempt in flight when ``wait`` runs out says nothing about the server: the
    earlier answers decide. "Held" answers give LockNotAcquired; "down" answers give
    LockUnavailable with that error, retried with pauses. Kills ``Locks._acquire`` 37
    (no holder time after an error), 49, 50, 51 (an error answer forgotten), 55 (a
    "held" answer forgotten), 95 (no pause after an error)."""
    locks, acquires = recording_locks(store)

    async def pause_at(when: float) -> None:
        await trio.sleep_until(when)
        store.pause()  # the attempt at 0.9825 hangs

    async with running(locks), trio.open_nursery() as nursery:
        async with locks.hold("room:42", ttl=30.0):
            start = trio.current_time()
            nursery.start_soon(pause_at, start + 0.9)
            with pytest.raises(LockNotAcquired):
                async with locks.hold("room:42", wait=1.0):
                    pass  # pragma: no cover
            assert trio.current_time() == pytest.approx(start + 1.0)
            store.resume()
        acquires.clear()
        store.take_down()
        start = trio.current_time()
        nursery.start_soon(pause_at, start + 0.9)
        nursery.start_soon(_bring_up_at, store, start + 0.9)
        with pytest.raises(LockUnavailable, match="store is down"):
            async with locks.hold("room:42", wait=1.0):
                pass  # pragma: no cover
        store.resume()
    assert [t - start for t in acquires] == pytest.approx(ATTEMPTS)


async def _bring_up_at(store: MemoryStore, when: float) -> None:
    await trio.sleep_until(when)
    store.bring_up()


async def test_an_attempt_cut_short_with_no_answer_at_all_is_unavailable(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """The actor comes up 0.3 s into ``hold()``: the one attempt gets the 0.2 s left of
    the op timeout and no answer, which says the server is unreachable, not that the
    lock is held. Kills ``Locks._acquire`` 17, 74."""

    class Hanging(MemoryLockBackend):
        async def acquire(self, name: str, owner: str, ttl: float) -> AcquireResult:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

    locks = Locks(
        LockSettings(default_ttl=TTL),
        cache_settings=CacheSettings(op_timeout=OP_TIMEOUT),
        backend=Hanging(store).connect,
    )
    async with trio.open_nursery() as nursery:

        async def start_later() -> None:
            await trio.sleep(0.3)
            await nursery.start(locks.run)

        nursery.start_soon(start_later)
        with pytest.raises(LockUnavailable, match=r"no answer to lock acquire within 0\.2s"):
            async with locks.hold("room:42"):
                pass  # pragma: no cover
        nursery.cancel_scope.cancel()


async def test_full_op_timeouts_without_answer_are_unavailable_even_after_answers(
    store: MemoryStore, mid_jitter: None, autojump_clock: trio.testing.MockClock
) -> None:
    """ "Held" answers, then the server hangs: attempts that waited their whole op
    timeout make it LockUnavailable, not LockNotAcquired. Kills ``Locks._acquire`` 75."""
    locks = make_locks(store)
    async with running(locks), trio.open_nursery() as nursery, locks.hold("room:42", ttl=30.0):

        async def pause_later() -> None:
            await trio.sleep(0.9)
            store.pause()

        nursery.start_soon(pause_later)
        with pytest.raises(LockUnavailable, match=r"within 0\.5s"):
            async with locks.hold("room:42", wait=2.0):
                pass  # pragma: no cover
        store.resume()


async def test_no_undo_for_an_acquire_never_sent(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """No actor: hold() gives up without sending anything, so nothing is to undo (no
    "got no answer" warning). Kills ``Locks._acquire`` 15."""
    locks = make_locks(store)
    with structlog.testing.capture_logs() as logs, pytest.raises(LockUnavailable):
        async with locks.hold("room:42"):
            pass  # pragma: no cover
    assert [e["event"] for e in logs] == []


async def test_defaults_without_cache_settings_and_type_errors_name_the_type(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """Without cache settings the op timeout is 1 s; the health probe runs every 5 s.
    Kills ``Locks.__init__`` 1, 4, 9, 26."""
    locks = Locks(LockSettings(), store=store)
    assert locks._probe_interval == 5.0
    async with running(locks):
        store.pause()
        start = trio.current_time()
        with pytest.raises(LockUnavailable, match="no answer"):
            async with locks.hold("room:42"):
                pass  # pragma: no cover
        assert trio.current_time() - start == pytest.approx(1.0)
        store.resume()
    with pytest.raises(TypeError, match=r"got CacheSettings$"):
        Locks(CacheSettings())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"got LockSettings$"):
        Locks(LockSettings(), cache_settings=LockSettings())  # type: ignore[arg-type]


async def test_release_failures_are_logged_with_the_lock_and_error(
    locks: Locks, store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``Locks._release_quietly`` 9-17 (the failed release's log) and
    ``Locks._release`` 14 (the reason of a lock found gone at release)."""
    with structlog.testing.capture_logs() as logs:
        async with locks.hold("room:42"):
            store.take_down()
    store.bring_up()
    assert [e for e in logs if e["event"].startswith("lock release")] == [
        {
            "event": "lock release failed; it expires by its TTL",
            "lock": "room:42",
            "error": "the in-memory store is down (simulated)",
            "log_level": "warning",
        }
    ]
    await trio.sleep(TTL)

    async def holder() -> None:
        async with locks.hold("room:42"):
            store.delete(KEY)

    with pytest.raises(LockLost, match=r"lost: the lock was no longer ours at release$"):
        await holder()


async def test_a_release_while_the_actor_is_down_waits_for_it_then_gives_up(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """The actor stops during the body: the release waits up to the op timeout for it
    to come back, then leaves the key to its TTL, saying so. Kills
    ``Locks._release_quietly`` 3, 18-24 and ``Locks.run`` 3."""
    locks = make_locks(store)
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            actor = trio.CancelScope()

            async def run_actor(task_status: trio.TaskStatus[Locks]) -> None:
                with actor:
                    await locks.run(task_status=task_status)

            await nursery.start(run_actor)
            async with locks.hold("room:42"):
                actor.cancel()
                await trio.sleep(0.1)
                ended = trio.current_time()
    assert trio.current_time() == pytest.approx(ended + OP_TIMEOUT)
    assert [e for e in logs if e["event"].startswith("lock release")] == [
        {
            "event": "lock release got no answer; it expires by its TTL",
            "lock": "room:42",
            "log_level": "warning",
        }
    ]
    assert store.get(KEY) is not None


# -- _redis.py ------------------------------------------------------------------------
async def test_redis_errors_name_the_operation(redis_url: str) -> None:
    """A closed backend says which call failed. Kills ``_redis.py``
    ``RedisLockBackend.renew`` 8, 16, 17 and ``RedisLockBackend.ping`` 1-4."""
    from gochat_actors.lock import open_redis_locks

    async with open_redis_locks(redis_url) as backend:
        pass
    with pytest.raises(LockUnavailable, match=r"^Redis lock renew: the connection is closed$"):
        await backend.renew("x", "a" * 32, 1.0)
    with pytest.raises(LockUnavailable, match=r"^Redis PING: the connection is closed$"):
        await backend.ping()


async def test_redis_acquire_answers_the_holders_ttl_and_closed_calls_name_themselves(
    redis_url: str, redis_key_prefix: str
) -> None:
    """A held lock answers its holder's PTTL in seconds (0 for a key without expiry);
    calls on a closed backend say which call. Kills ``_redis.py``
    ``RedisLockBackend.acquire`` 9, 17, 18, 35, 36, ``RedisLockBackend.release`` 8, 16,
    17 and ``RedisLockBackend._run`` 1."""
    from gochat_actors.lock import open_redis_locks

    async with open_redis_locks(redis_url, key_prefix=redis_key_prefix) as backend:
        assert (await backend.acquire("held", "a" * 32, 30.0)).token == 1
        held = await backend.acquire("held", "b" * 32, 30.0)
        assert held.token is None
        assert 29.0 < held.retry_after <= 30.0
        assert held.retry_after * 1000 == pytest.approx(round(held.retry_after * 1000))  # ms
        key, _ = lock_keys(redis_key_prefix, "forever")
        await backend._client.set(key, "1:" + "c" * 32)  # type: ignore[attr-defined]
        forever = await backend.acquire("forever", "b" * 32, 30.0)
        assert forever.token is None
        assert forever.retry_after == 0.0
    with pytest.raises(LockUnavailable, match=r"^Redis lock acquire: the connection is closed$"):
        await backend.acquire("x", "a" * 32, 1.0)
    with pytest.raises(LockUnavailable, match=r"^Redis lock release: the connection is closed$"):
        await backend.release("x", "a" * 32)


async def test_constructor_errors_and_labels_follow_the_arguments(
    store: MemoryStore, autojump_clock: trio.testing.MockClock
) -> None:
    """Kills ``Locks.__init__`` 35, 85, 89, 90 (which argument is wrong), 96, 98, 99
    (``metric_prefixes`` and ``max_metric_prefixes`` dropped) and 71, 83, 84 (the
    component's name in its errors)."""
    with pytest.raises(ValueError, match=r"^safety_margin must be"):
        Locks(LockSettings(), safety_margin=-1.0)
    with pytest.raises(ValueError, match=r"^probe_interval must be"):
        Locks(LockSettings(), probe_interval=-1.0)
    allowed = Locks(LockSettings(), store=store, metric_prefixes=["room"])
    assert [allowed._label(n) for n in ("room:1", "user:1")] == ["room", "_other"]
    one = Locks(LockSettings(), store=store, max_metric_prefixes=1)
    assert [one._label(n) for n in ("room:1", "user:1", "room:2")] == ["room", "_other", "room"]
    with pytest.raises(LockUnavailable, match=r"^locks is not running"):
        async with one.hold("room:42"):
            pass  # pragma: no cover
