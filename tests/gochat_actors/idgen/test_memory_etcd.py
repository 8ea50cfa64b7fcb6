"""MemoryEtcd's knobs: latency (half each way) and requests held and applied late."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gochat_actors.idgen import MemoryEtcd


async def test_latency_is_half_on_the_way_there_half_on_the_way_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    etcd = MemoryEtcd(latency=0.4)
    start = trio.current_time()
    lease, ttl = await etcd.lease_grant(10)
    assert trio.current_time() - start == pytest.approx(0.4)
    # granted when the request arrived, 0.2 s after it was sent
    assert etcd._leases[lease].expires_at == pytest.approx(start + 0.2 + ttl)
    with trio.move_on_after(0.3):  # gives up on the way back: applied all the same
        await etcd.put(b"k", b"v")
    assert [kv.value for kv in await etcd.range(b"k")] == [b"v"]
    with trio.move_on_after(0.1):  # gives up on the way there: never applied
        await etcd.put(b"k", b"w")
    assert [kv.value for kv in await etcd.range(b"k")] == [b"v"]
    with pytest.raises(ValueError, match="latency"):
        MemoryEtcd(latency=-1.0)


async def test_held_requests_are_applied_late_in_order_even_if_abandoned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    etcd = MemoryEtcd()
    await etcd.put(b"k", b"0")
    etcd.hold_requests("put")
    with trio.move_on_after(1.0) as gave_up:
        await etcd.put(b"k", b"1")  # the client times out ...
    assert gave_up.cancelled_caught
    assert etcd.held == 1
    assert [kv.value for kv in await etcd.range(b"k")] == [b"0"]  # ranges are not held
    results: list[int] = []
    async with trio.open_nursery() as nursery:

        async def waiting() -> None:
            results.append(await etcd.put(b"k", b"2"))

        nursery.start_soon(waiting)
        await trio.sleep(1.0)
        assert etcd.held == 2
        etcd.stop_holding()
        await etcd.put(b"other", b"x")  # not held any more
        assert etcd.apply_held() == 2  # ... etcd applies both now, in order
    [kv] = await etcd.range(b"k")
    assert (kv.value, kv.version) == (b"2", 3)
    assert results == [kv.mod_revision]  # the caller still waiting got its answer
    assert etcd.held == 0


async def test_hold_every_operation_and_unknown_names(
    autojump_clock: trio.testing.MockClock,
) -> None:
    etcd = MemoryEtcd()
    etcd.hold_requests()
    with trio.move_on_after(1.0):
        await etcd.lease_grant(5)
    with trio.move_on_after(1.0):
        await etcd.range(b"k")
    assert etcd.held == 2
    assert etcd.apply_held() == 2
    assert len(etcd._leases) == 1
    with pytest.raises(ValueError, match="unknown etcd operations"):
        etcd.hold_requests("get")
