"""Adversarial checks of the Sentinel lock backend's ``WAIT`` path (review branch
``redisbreak``), on the fake coredis client of ``test_sentinel_wait.py``."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gochat_actors import LockUnavailable

from .test_sentinel_wait import FakeRedis, backend_on


async def test_a_master_that_lost_its_replica_does_not_hand_out_unreplicated_tokens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The old master M, cut off from the sentinels and its replica R; R was promoted and
    # R holds everything M acknowledged with WAIT (the fence counter at 1). Our client
    # still reaches M over its pooled connection (nothing told it about the failover).
    old_master = FakeRedis(replicas=1)
    backend = backend_on(old_master)
    assert (await backend.acquire("room:42", "a", 5.0)).token == 1  # WAITed: R has 1
    assert await backend.release("room:42", "a")
    promoted_counter = 1  # what R (now the master) had of the fence counter
    promoted_counter += 3  # R hands out tokens 2, 3, 4 to other clients of room:42
    # M's replica is gone: ROLE on M shows none, WAIT 1 times out.
    old_master.replicas, old_master.acks = 0, False
    with pytest.raises(LockUnavailable):  # the shortfall: undone, fine
        await backend.acquire("room:42", "b", 5.0)
    # The next acquire counts M's replicas (0) and runs without WAIT on M.
    try:
        result = await backend.acquire("room:42", "c", 5.0)
    except LockUnavailable:
        return  # refused: what a master that just lost its replicas should answer
    assert result.token is not None
    assert result.token > promoted_counter, "the same fencing token on two masters"


async def test_a_renewal_of_a_lock_no_longer_ours_says_so_despite_a_shortfall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeRedis(replicas=1)
    backend = backend_on(fake)
    assert (await backend.acquire("room:42", "a", 5.0)).token == 1
    fake.data.clear()  # the key is gone (lost in a failover, or taken after expiry)
    fake.acks = False  # and the replica does not confirm in time
    assert await backend.renew("room:42", "a", 5.0) is False
