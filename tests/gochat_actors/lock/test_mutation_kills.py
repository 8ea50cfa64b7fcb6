"""Tests written for the survivors of the mutation run of ``gochat_actors/lock``
(``make mutants MODULE=gochat_actors/lock``; see docs/testing.md, "Mutation runs", and
docs/mutants.md). Each test names the mutants it kills (``_locks.py`` unless said
otherwise); each was seen failing with its mutants and passing without, with
``scripts/mutants.py gochat_actors/lock --tests ... --check "" MUTANT...``.

In-memory backend under ``autojump_clock``: no sleeps in real time, no timing bounds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import structlog
import trio
import trio.testing

from gochat_actors import LockLost, LockUnavailable
from gochat_actors.cache import CacheSettings, MemoryStore
from gochat_actors.lock import Lease, Locks, LockSettings, lock_keys
from gochat_actors.metrics import Metrics

TTL = 3.0
MARGIN = TTL / 10
OP_TIMEOUT = 0.5
KEY, FENCE = lock_keys("", "room:42")


def make_locks(store: MemoryStore, **options: Any) -> Locks:
    return Locks(
        LockSettings(default_ttl=TTL),
        cache_settings=CacheSettings(op_timeout=OP_TIMEOUT),
        metrics=Metrics(),
        store=store,
        **options,
    )


@asynccontextmanager
async def running(locks: Locks) -> AsyncIterator[trio.CancelScope]:
    """Run the Locks actor; yields the scope that stops it."""
    async with trio.open_nursery() as nursery:
        await nursery.start(locks.run)
        yield nursery.cancel_scope
        nursery.cancel_scope.cancel()


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
    """Kills ``Lease.__repr__`` 1-5 (no test called it)."""
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
    ``Locks._renew`` 32, 35 (``gone=`` dropped) and ``Locks._lose`` 2, 3 (``gone``
    forgotten)."""

    async def holder() -> None:
        async with locks.hold("room:42"):
            await trio.sleep(0.5)
            store.set(KEY, b"99:someone-else", 30.0)
            seen["before"] = store.round_trips
            await trio.sleep_forever()

    seen: dict[str, int] = {}
    with pytest.raises(LockLost, match="no longer ours"):
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
