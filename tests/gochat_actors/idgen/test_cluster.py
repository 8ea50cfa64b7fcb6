"""``ClusterEtcd`` (issue 20): a request moves to the next member at once when one is
down, hangs or refuses; failed members rest, then are tried again; a caller's
cancellation never marks a member failed. On fake members of one in-memory store, under
``autojump_clock``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from gochat_actors import Dsn, IdGenAuthFailed, IdGenUnavailable, MachineIdLost
from gochat_actors.idgen import EtcdBackend, IdGenerator, IdGenSettings, TrioIdClock, prefix_end
from gochat_actors.testing import IDGEN_CHECKS
from supervisors import open_supervisor

from ._member import FakeMember, fake_cluster

TIMEOUT = 1.0


async def test_a_member_that_is_down_is_skipped_at_once(autojump_clock: trio.abc.Clock) -> None:
    etcd, (m1, m2, _), _ = fake_cluster(timeout=TIMEOUT)
    m1.mode = "down"
    start = trio.current_time()
    await etcd.put(b"/k", b"v")
    assert trio.current_time() == start  # no timeout waited for
    assert (m1.calls, m2.calls, m2.applied) == (1, 1, 1)
    assert etcd.current == "m2"
    assert etcd.failovers == 1
    await etcd.range(b"/k")  # sticks to the member that answered
    assert (m1.calls, m2.calls) == (1, 2)


async def test_a_member_that_hangs_costs_one_timeout(autojump_clock: trio.abc.Clock) -> None:
    etcd, (m1, m2, _), store = fake_cluster(timeout=TIMEOUT)
    m1.mode = "hang"
    start = trio.current_time()
    lease, _ = await etcd.lease_grant(10)
    assert trio.current_time() - start == pytest.approx(TIMEOUT)
    assert await store.lease_time_to_live(lease) is not None
    assert (m1.applied, m2.applied) == (0, 1)
    assert etcd.current == "m2"


async def test_no_member_answering_names_each_failure(autojump_clock: trio.abc.Clock) -> None:
    etcd, members, _ = fake_cluster(timeout=TIMEOUT)
    members[0].mode, members[1].mode, members[2].mode = "down", "hang", "late"
    start = trio.current_time()
    with pytest.raises(IdGenUnavailable) as info:
        await etcd.range(b"/k")
    assert trio.current_time() - start == pytest.approx(2 * TIMEOUT)  # at most one each
    message = str(info.value)
    assert "none of the 3 members answered" in message
    assert "m1: etcd at m1 failed, server unreachable" in message
    assert "m2: no reply within 1s" in message
    assert "m3: no reply within 1s" in message
    assert etcd.request_bound == 3 * TIMEOUT


async def test_failed_members_rest_then_are_tried_again(autojump_clock: trio.abc.Clock) -> None:
    etcd, (m1, m2, m3), _ = fake_cluster(timeout=TIMEOUT, retry_after=5.0)
    m1.mode = "down"
    await etcd.range(b"/k")  # m1 fails, m2 answers
    m1.mode = "ok"
    m2.mode = "down"
    await etcd.range(b"/k")  # m2 fails; m1 rests (failed < 5 s ago): m3 answers
    assert etcd.current == "m3"
    assert m1.calls == 1
    m3.mode = "down"
    await etcd.range(b"/k")  # every other one failed: the longest resting first, m1
    assert etcd.current == "m1"
    assert m1.calls == 2
    m1.mode = "down"
    m2.mode = "ok"
    await trio.sleep(5.0)  # m2 and m3 rested long enough: in ring order after m1
    await etcd.range(b"/k")
    assert etcd.current == "m2"
    assert m3.calls == 2  # not tried: m2 answered first


async def test_lease_lost_and_refused_credentials_are_not_retried_elsewhere(
    autojump_clock: trio.abc.Clock,
) -> None:
    etcd, (m1, m2, _), _ = fake_cluster(timeout=TIMEOUT)
    with pytest.raises(MachineIdLost):
        await etcd.put(b"/k", b"v", lease=12345)  # etcd answered: no such lease
    assert (m1.calls, m2.calls) == (1, 0)

    async def refuse(*args: object, **kwargs: object) -> int:
        raise IdGenAuthFailed("etcd put refused: authentication failed")

    m1.put = refuse  # type: ignore[method-assign]
    with pytest.raises(IdGenAuthFailed):
        await etcd.put(b"/k", b"v")
    assert m2.calls == 0


def slowed(put: Callable[..., Awaitable[int]]) -> Callable[..., Awaitable[int]]:
    """``put`` answering after half a timeout."""

    async def slow_put(key: bytes, value: bytes, *, lease: int = 0) -> int:
        await trio.sleep(TIMEOUT / 2)
        return await put(key, value, lease=lease)

    return slow_put


async def test_a_caller_cancelled_at_any_point_marks_no_member_failed(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Cancel the caller at every instant of a request that times out on m1 and is
    answered late by m2 (its own latency): the member it was cancelled on stays healthy
    unless its own timeout had passed, and the next request works."""
    for step in range(9):
        cancel_after = (step + 0.5) * TIMEOUT / 4  # 1/8 .. 17/8 TIMEOUT: no ties
        etcd, (m1, m2, m3), store = fake_cluster(timeout=TIMEOUT)
        m1.mode = "hang"
        m2.put = slowed(m2.put)  # type: ignore[method-assign,assignment]
        with trio.move_on_after(cancel_after) as scope:
            await etcd.put(b"/k", b"v")
        done = not scope.cancelled_caught
        assert done == (cancel_after >= 1.5 * TIMEOUT), step
        members = etcd._members
        assert (members[0].failed_at is not None) == (cancel_after >= TIMEOUT), step
        assert members[1].failed_at is None, step
        assert members[2].failed_at is None, step
        assert m3.calls == 0
        m1.mode = "ok"
        await etcd.put(b"/k2", b"v2")  # the next request works
        assert [kv.key for kv in await store.range(b"/", prefix_end(b"/"))] == (
            [b"/k", b"/k2"] if done else [b"/k2"]
        )


@pytest.mark.parametrize("check", IDGEN_CHECKS, ids=lambda c: c.__name__)
async def test_the_conformance_suite_on_a_cluster_with_a_member_down(
    check: object, autojump_clock: trio.abc.Clock
) -> None:
    etcd, (m1, _, _), _ = fake_cluster(timeout=TIMEOUT)
    m1.mode = "down"
    await check(etcd)  # type: ignore[operator]


# -- the keeper on a cluster ---------------------------------------------------------------
TTL, MARGIN = 9.0, 1.5
WALL_MS = 1_700_000_000_000


def generator(etcd: EtcdBackend) -> IdGenerator:
    settings = IdGenSettings(
        etcd=Dsn("memory://"), lease_ttl=TTL, margin=MARGIN, key_prefix="/ids/"
    )
    return IdGenerator(settings, backend=etcd, clock=TrioIdClock(WALL_MS))


async def test_the_member_in_use_hangs_and_issuing_goes_on(autojump_clock: trio.abc.Clock) -> None:
    etcd, (m1, _, _), _ = fake_cluster(timeout=TIMEOUT)
    ids = generator(etcd)
    issued: list[int] = []
    async with open_supervisor([ids.spec()]):
        machine_id = ids.machine_id
        m1.mode = "hang"
        for _ in range(int(5 * TTL * 10)):  # five TTLs, every 0.1 s
            issued += ids.next_ids(5)  # never MachineIdLost: no stall at all
            await trio.sleep(0.1)
        assert etcd.current in ("m2", "m3")
        stats = ids.statistics()
        assert (ids.machine_id, stats.acquisitions) == (machine_id, 1)
        assert stats.renewal_failures == 0
    assert len(set(issued)) == len(issued)


async def test_a_claim_applied_by_a_member_that_answered_late_is_recognised(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The claim txn reaches m1, which applies it and then never answers in time; the
    cluster client sends it again to m2, whose compare fails (the key exists): the
    keeper sees its own claim (its lease, its value) and keeps it, leaking nothing."""
    etcd, (m1, _, _), store = fake_cluster(timeout=TIMEOUT, late_by=600.0)
    original = m1.txn
    late_once = [True]

    async def txn(*args: object, **kwargs: object) -> object:
        if late_once[0]:
            late_once[0] = False
            m1.mode = "late"
        try:
            return await original(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            m1.mode = "ok"

    m1.txn = txn  # type: ignore[method-assign,assignment]
    ids = generator(etcd)
    async with open_supervisor([ids.spec()]):
        claims = [
            kv
            for kv in await store.range(b"/ids/", prefix_end(b"/ids/"))
            if kv.key[len(b"/ids/") :].isdigit()
        ]
        assert [kv.key for kv in claims] == [f"/ids/{ids.machine_id}".encode()]
        assert ids.statistics().acquisitions == 1
        ids.next_id()


async def test_the_keeper_bounds_a_request_by_every_member(autojump_clock: trio.abc.Clock) -> None:
    etcd, members, _ = fake_cluster(timeout=4.0)  # 3 x 4 s > the keeper's own 3 s
    members[0].mode = members[1].mode = "hang"
    ids = generator(etcd)
    async with open_supervisor([ids.spec()]):  # m3 answers after 8 s: still in time
        assert ids.ready
        assert etcd.current == "m3"


def test_fake_member_is_an_etcd_backend() -> None:
    from gochat_actors.idgen import EtcdBackend, MemoryEtcd

    assert isinstance(FakeMember(MemoryEtcd(), "m"), EtcdBackend)
