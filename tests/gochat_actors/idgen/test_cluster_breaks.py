"""Adversarial review of ``ClusterEtcd`` and the keeper on a cluster (issue 20), on fake
members of one in-memory store under ``autojump_clock``. A cluster of n members may lose
(n - 1) // 2 of them: renewals must still land in time when they all hang."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from gochat_actors import IdGenUnavailable, MachineIdLost
from gochat_actors.idgen import EtcdBackend, IdGenerator, IdGenSettings, MemoryEtcd, TrioIdClock
from gochat_actors.idgen._cluster import ClusterEtcd
from supervisors import open_supervisor

from ._member import FakeMember

TTL, MARGIN = 9.0, 1.5
WALL_MS = 1_700_000_000_000


def members_url(count: int) -> str:
    return ",".join(f"http://127.0.0.1:{23790 + n}" for n in range(1, count + 1))


def cluster_generator(
    count: int, *, ttl: float = TTL, margin: float = MARGIN
) -> tuple[IdGenerator, ClusterEtcd, list[FakeMember], MemoryEtcd]:
    """A generator whose settings name ``count`` members (so its request timeout is the
    default for a cluster of that size) on a ClusterEtcd of as many fake members, built
    as ``_backends._http`` builds it (timeout = the request timeout, retry after ttl)."""
    settings = IdGenSettings.model_validate(
        {"etcd": members_url(count), "lease_ttl": ttl, "margin": margin, "key_prefix": "/ids/"}
    )
    store = MemoryEtcd()
    members = [FakeMember(store, f"m{n}") for n in range(1, count + 1)]
    probe = IdGenerator(settings, clock=TrioIdClock(WALL_MS))
    pairs: list[tuple[str, EtcdBackend]] = [(m.name, m) for m in members]
    etcd = ClusterEtcd(pairs, timeout=probe.request_timeout, retry_after=ttl)
    ids = IdGenerator(settings, backend=etcd, clock=TrioIdClock(WALL_MS))
    return ids, etcd, members, store


async def issue_for(ids: IdGenerator, seconds: float, step: float = 0.05) -> tuple[int, int]:
    """Issue every ``step`` for ``seconds``: (IDs issued, calls refused)."""
    issued = refused = 0
    for _ in range(round(seconds / step)):
        try:
            issued += len(ids.next_ids(2))
        except MachineIdLost:
            refused += 1
        await trio.sleep(step)
    return issued, refused


async def test_five_members_two_paused_never_stop_issuing(
    autojump_clock: trio.abc.Clock,
) -> None:
    ids, etcd, members, _ = cluster_generator(5)
    async with open_supervisor([ids.spec()]):
        machine_id = ids.machine_id
        assert etcd.current == "m1"
        members[0].mode = members[1].mode = "hang"  # a 5-member cluster survives this
        _, refused = await issue_for(ids, 4 * TTL)
        stats = ids.statistics()
        assert (ids.machine_id, stats.acquisitions) == (machine_id, 1)
        assert refused == 0
        assert stats.renewal_failures == 0


async def test_seven_members_three_paused_keep_the_machine_id(
    autojump_clock: trio.abc.Clock,
) -> None:
    ids, _, members, _ = cluster_generator(7)
    async with open_supervisor([ids.spec()]):
        machine_id = ids.machine_id
        for member in members[:3]:
            member.mode = "hang"
        await issue_for(ids, 4 * TTL)
        assert (ids.machine_id, ids.statistics().acquisitions) == (machine_id, 1)


async def test_all_members_down_then_one_back_answers_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = MemoryEtcd()
    members = [FakeMember(store, f"m{n}") for n in range(1, 4)]
    etcd = ClusterEtcd([(m.name, m) for m in members], timeout=1.0, retry_after=5.0)
    for member in members:
        member.mode = "down"
    for _ in range(3):
        with pytest.raises(IdGenUnavailable):
            await etcd.put(b"/k", b"v")
    members[2].mode = "ok"
    start = trio.current_time()
    await etcd.put(b"/k", b"v")
    assert trio.current_time() == start
    assert etcd.current == "m3"


@settings(max_examples=150, deadline=None)
@given(
    modes=st.lists(
        st.lists(st.sampled_from(["ok", "down", "hang", "late"]), min_size=1, max_size=6),
        min_size=1,
        max_size=8,
    ),
    size=st.integers(1, 6),
)
def test_each_request_tries_each_member_once_within_its_bound(
    modes: list[list[str]], size: int
) -> None:
    """Per request, members' modes drawn at random: the request succeeds iff a member
    answers; it tries each member at most once; it takes at most one timeout per member
    that hung; the value it wrote is in the store iff it succeeded or a member applied it."""

    async def main() -> None:
        store = MemoryEtcd()
        members = [FakeMember(store, f"m{n}", late_by=60.0) for n in range(size)]
        etcd = ClusterEtcd([(m.name, m) for m in members], timeout=1.0, retry_after=3.0)
        for step, drawn in enumerate(modes):
            for member, mode in zip(members, (drawn * size)[:size], strict=True):
                member.mode = mode  # type: ignore[assignment]
            calls = [m.calls for m in members]
            start = trio.current_time()
            key = b"/k%d" % step
            try:
                await etcd.put(key, b"v")
                ok = True
            except IdGenUnavailable:
                ok = False
            took = trio.current_time() - start
            tried = [m for m, before in zip(members, calls, strict=True) if m.calls > before]
            assert all(m.calls - c <= 1 for m, c in zip(members, calls, strict=True))
            assert ok == any(m.mode == "ok" for m in tried)
            if not ok:
                assert len(tried) == size
            slow = sum(m.mode in ("hang", "late") for m in tried)
            assert took <= slow * 1.0 + 1e-9
            written = bool(await store.range(key))
            assert written == (ok or any(m.mode == "late" for m in tried))
            await trio.sleep(1.0)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
