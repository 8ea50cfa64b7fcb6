"""The machine-ID keeper's timing rules, on MemoryEtcd under ``autojump_clock``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import structlog
import trio

from gochat_actors import MachineIdLost
from gochat_actors.idgen import IdGenerator, IdGenSettings, MemoryEtcd, TrioIdClock, prefix_end
from gochat_actors.metrics import Metrics
from supervisors import ChildStartError, Health, open_supervisor
from supervisors.testing import kill

TTL, MARGIN = 9.0, 1.5
PREFIX = "/ids/"
WALL_MS = 1_700_000_000_000


def settings(**overrides: object) -> IdGenSettings:
    values: dict[str, object] = {
        "etcd": "memory://",
        "lease_ttl": TTL,
        "margin": MARGIN,
        "key_prefix": PREFIX,
    }
    values.update(overrides)
    return IdGenSettings.model_validate(values)


TWO_IDS = {"timestamp_bits": 50, "machine_bits": 1, "sequence_bits": 12}


@pytest.fixture
def etcd() -> MemoryEtcd:
    """A shared in-memory etcd; tests using it also take ``autojump_clock`` (pytest-trio
    only sees a clock among the test's own arguments)."""
    return MemoryEtcd()


def make(etcd: MemoryEtcd, *, wall_ms: int = WALL_MS, **overrides: object) -> IdGenerator:
    return IdGenerator(
        settings(**overrides), backend=etcd, clock=TrioIdClock(wall_ms), metrics=Metrics()
    )


async def take(ids: IdGenerator, n: int) -> list[int]:
    """``n`` IDs, at most one millisecond's worth at a time: trio's clock stands still
    while synchronous code runs, so a batch must never need the next millisecond."""
    out: list[int] = []
    while len(out) < n:
        out += ids.next_ids(min(4000, n - len(out)))
        await trio.sleep(0.001)
    return out


async def record(etcd: MemoryEtcd, machine_id: int) -> dict[str, object]:
    [kv] = await etcd.range(f"{PREFIX}last/{machine_id}".encode())
    value: dict[str, object] = json.loads(kv.value)
    return value


async def hold(etcd: MemoryEtcd, machine_id: int) -> int:
    """Claim ``machine_id`` by hand (as another process would); returns the lease."""
    lease, _ = await etcd.lease_grant(10**7)
    await etcd.put(f"{PREFIX}{machine_id}".encode(), b'{"owner":"other"}', lease=lease)
    return lease


async def test_renews_every_third_of_the_ttl(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    ids = make(etcd)
    async with open_supervisor([ids.spec()]):
        start = trio.current_time()
        renewals = ids.statistics().renewals
        await trio.sleep(10 * TTL + 0.1)
        assert ids.statistics().renewals - renewals == 30
        assert trio.current_time() - start < 10 * TTL + 0.2
        assert ids.ready


async def test_issues_until_last_ack_plus_ttl_minus_margin_then_stops(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    ids = make(etcd)
    async with open_supervisor([ids.spec()]):
        await trio.sleep(TTL / 3 + 0.01)  # just after a renewal
        renewed_at = trio.current_time() - 0.01
        etcd.pause()  # etcd hangs (kill -STOP)
        deadline = ids.statistics().valid_until
        assert deadline == pytest.approx(renewed_at + TTL - MARGIN, abs=0.011)
        last_ok = trio.current_time()
        while ids.ready:
            ids.next_id()
            last_ok = trio.current_time()
            await trio.sleep(0.001)
        with pytest.raises(MachineIdLost, match="not renewed"):
            ids.next_id()
        # the deadline is measured from when the keepalive was *sent*
        assert renewed_at + TTL - MARGIN - 0.002 <= last_ok < renewed_at + TTL - MARGIN
        assert ids.machine_id is None
        await trio.sleep(0.001)  # the keeper noticed at the same instant
        assert ids._metrics is not None
        assert ids._metrics.idgen_machine_id._value.get() == -1
        # ... while etcd keeps the lease for the full TTL after the keepalive it saw
        stop_issuing = trio.current_time()
        etcd.resume()
        await ids.wait_ready()
        assert trio.current_time() - stop_issuing < 1.0
        assert ids.statistics().renewal_failures >= 1


async def test_lease_lost_during_a_long_pause_reacquires_without_duplicates(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    a, b = make(etcd), make(etcd)
    got: list[int] = []
    async with open_supervisor([a.spec("a"), b.spec("b")]):
        got += await take(a, 5000) + await take(b, 5000)
        etcd.pause()
        await trio.sleep(3 * TTL)  # both leases expire meanwhile
        assert not a.ready
        assert not b.ready
        etcd.resume()
        await a.wait_ready(timeout=5 * TTL)
        await b.wait_ready(timeout=5 * TTL)
        got += await take(a, 5000) + await take(b, 5000)
        assert a.statistics().acquisitions == 2
        assert b.statistics().acquisitions == 2
    assert len(set(got)) == len(got) == 20_000


async def test_renewal_failures_retry_sooner_and_count(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    ids = make(etcd)
    async with open_supervisor([ids.spec()]) as sup:
        etcd.fail()
        calls = etcd.calls
        await trio.sleep(TTL - MARGIN + 0.01)  # retried with backoff <= margin/2
        assert etcd.calls - calls >= 4
        failures = ids.statistics().renewal_failures
        assert failures >= 4
        assert ids._metrics is not None
        assert ids._metrics.idgen_renewal_failures._value.get() == failures
        assert not ids.ready
        [child] = sup.which_children()
        assert child.health is Health.FAILED
        etcd.fail(False)
        await ids.wait_ready(timeout=TTL / 3 + 0.5)
        assert sup.which_children()[0].health is Health.OK
        assert ids.statistics().acquisitions == 1  # the lease survived: same claim


async def test_claim_deleted_behind_its_back_is_reacquired(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    ids = make(etcd, **TWO_IDS)
    async with open_supervisor([ids.spec()]):
        first = ids.machine_id
        before = ids.next_id()
        await etcd.delete(f"{PREFIX}{first}".encode())
        await trio.sleep(TTL / 3 + 0.01)  # the next renewal sees the claim gone
        await ids.wait_ready(timeout=TTL)
        assert ids.statistics().acquisitions == 2
        assert ids.next_id() > before


async def test_exhaustion_waits_with_backoff_until_an_id_frees(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    """Issue 22 point 2: machine_bits=1 and three holders. The third does not fail to
    start (a ChildStartError took the service down): it starts, says it waits (health,
    readiness, next_id's error, one log line), retries with backoff (never spins), and
    takes the ID the moment one frees."""
    a, b, c = (make(etcd, **TWO_IDS) for _ in range(3))
    a_scope = trio.CancelScope()

    async def run_a(*, task_status: trio.TaskStatus[IdGenerator]) -> None:
        with a_scope:
            await a.run(task_status=task_status)

    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as holders:
            await holders.start(run_a)
            await holders.start(b.run)
            async with open_supervisor([c.spec("c")]) as sup:
                assert not c.ready
                [child] = sup.which_children()
                assert child.health is Health.FAILED
                assert "all 2 machine IDs" in child.health_reason
                assert "waiting for one to free" in child.health_reason
                report = sup.health()
                assert not report.ready
                assert report.live
                assert any("waiting for one to free" in r for r in report.reasons)
                with pytest.raises(MachineIdLost, match="waiting for one to free"):
                    c.next_id()

                def holders_calls() -> int:  # a keepalive and a write per renewal
                    return 2 * (a.statistics().renewals + b.statistics().renewals)

                calls = etcd.calls - holders_calls()
                await trio.sleep(10 * TTL)
                tries = etcd.calls - holders_calls() - calls
                # One read a try, the backoff capped at lease_ttl/3 with +-20% jitter: at
                # least 0.8 * TTL/3 between tries once capped, so at most 10 * TTL /
                # (0.8 * TTL/3) = 37.5 tries, plus the 3 of the ramp (0.5, 1, 2 s). A spin
                # would be thousands. (The bound was 35: a draw of short delays made 36.)
                assert 10 <= tries <= 41
                freed = a.machine_id
                a_scope.cancel()  # a stops cleanly: its ID is free at once
                stopped = trio.current_time()
                await c.wait_ready(timeout=TTL)
                assert trio.current_time() - stopped <= TTL / 3 + 0.1
                assert c.machine_id == freed
                assert sup.which_children()[0].health is Health.OK
                assert sup.which_children()[0].restarts == 0
                assert sup.health().ready
            holders.cancel_scope.cancel()
    exhausted = [e for e in logs if e["event"] == "idgen.exhausted"]
    assert len(exhausted) == 1  # said once, not once per try
    assert exhausted[0]["log_level"] == "warning"
    [freed_log] = [e for e in logs if e["event"] == "idgen.id_freed"]
    assert freed_log["waited_ms"] >= 10 * TTL * 1000


async def test_an_id_taken_while_paused_is_waited_for_not_escalated(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    """Issue 22 point 2: a generator whose ID was taken (while it was paused) found every
    ID held and restarted its child three times with no delay, then the tree gave up.
    Now the child waits in place until an ID frees."""
    a, c = make(etcd, **TWO_IDS), make(etcd, **TWO_IDS)
    async with open_supervisor([a.spec("a"), c.spec("c")]) as sup:
        mine = c.machine_id
        assert mine is not None
        await etcd.delete(f"{PREFIX}{mine}".encode())  # its claim vanishes ...
        other = await hold(etcd, mine)  # ... and another process takes the ID
        await trio.sleep(5 * TTL)
        assert not c.ready
        info = {i.id: i for i in sup.which_children()}
        assert info["c"].restarts == 0
        assert info["c"].health is Health.FAILED
        assert "waiting for one to free" in info["c"].health_reason
        assert sup.health().live
        await etcd.lease_revoke(other)  # the other process goes away
        await c.wait_ready(timeout=TTL)
        assert c.machine_id == mine
        assert {i.id: i for i in sup.which_children()}["c"].restarts == 0


async def test_1024_generators_hold_every_id_and_the_next_waits(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    holders = [make(etcd) for _ in range(1024)]
    async with trio.open_nursery() as nursery:
        for ids in holders:
            await nursery.start(ids.run)
        assert {ids.machine_id for ids in holders} == set(range(1024))
        late = make(etcd)
        async with open_supervisor([late.spec()]):
            await trio.sleep(1.0)  # a few tries
            assert not late.ready
            assert etcd._leases.keys() == {
                kv.lease for kv in await etcd.range(b"/ids/0", b"/ids/:")
            }  # the waiting one holds no lease: it scans before it grants one
        nursery.cancel_scope.cancel()
    assert etcd._leases == {}


async def test_shutdown_revokes_the_lease_and_records_a_final_timestamp(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    ids = make(etcd)
    async with open_supervisor([ids.spec()]):
        machine_id = ids.machine_id
        assert machine_id is not None
        last = ids.next_ids(100)[-1]
    assert not ids.ready
    claims = await etcd.range(PREFIX.encode() + b"0", PREFIX.encode() + b":")
    assert claims == []
    assert etcd._leases == {}
    saved = await record(etcd, machine_id)
    assert saved["final"] is True
    assert saved["owner"] == ids.owner
    assert saved["last_ms"] == ids.parse(last).timestamp_ms


async def test_new_owner_waits_out_a_crashed_owners_last_timestamp_plus_ttl(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    await hold(etcd, 1)  # only ID 0 is free
    a = make(etcd, **TWO_IDS)
    async with open_supervisor([a.spec()]):
        assert a.machine_id == 0
        a_ids = a.next_ids(1000)
        etcd.fail()  # a "crashes": its final record and revoke never reach etcd
    etcd.fail(False)
    saved = await record(etcd, 0)
    assert saved["final"] is False
    assert isinstance(saved["last_ms"], int)
    await trio.sleep(TTL + 1)  # a's lease expires
    b = make(etcd, **TWO_IDS)  # same wall clock; it must not reuse a's timestamps
    started = trio.current_time()
    async with open_supervisor([b.spec()]):
        assert b.machine_id == 0
        first = b.next_id()
    assert b.parse(first).timestamp_ms > saved["last_ms"] + TTL * 1000
    assert first > max(a_ids)
    assert trio.current_time() - started <= TTL + 0.1


async def test_clean_handover_needs_no_wait(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    await hold(etcd, 1)
    a = make(etcd, **TWO_IDS)
    async with open_supervisor([a.spec()]):
        last = a.next_ids(1000)[-1]
    b = make(etcd, wall_ms=WALL_MS + 1_000, **TWO_IDS)
    started = trio.current_time()
    async with open_supervisor([b.spec()]):
        assert b.next_id() > last
    assert trio.current_time() - started < 0.1


async def test_wall_clock_stepped_back_and_forth_never_duplicates_or_goes_back(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    await hold(etcd, 1)
    clock = TrioIdClock(WALL_MS)
    a = IdGenerator(settings(**TWO_IDS), backend=etcd, clock=clock)
    got: list[int] = []
    async with open_supervisor([a.spec()]):
        for step in (-3600.0, 0.0, 7200.0, -86_400.0):
            clock.step(step)  # an NTP step inside the process: ignored
            for _ in range(50):
                got += a.next_ids(100)
                await trio.sleep(0.01)
    # a new process whose wall clock is an hour behind takes the same machine ID
    b = make(etcd, wall_ms=WALL_MS - 3_600_000, **TWO_IDS)
    async with open_supervisor([b.spec()]):
        assert b.machine_id == 0
        got += b.next_ids(1000)
    # and one an hour ahead, then one back at the right time
    c = make(etcd, wall_ms=WALL_MS + 3_600_000, **TWO_IDS)
    async with open_supervisor([c.spec()]):
        got += c.next_ids(1000)
    d = make(etcd, **TWO_IDS)
    async with open_supervisor([d.spec()]):
        got += d.next_ids(1000)
    assert got == sorted(set(got))


async def test_prefers_an_id_usable_soon_over_one_whose_owner_ran_ahead(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    ahead = {"owner": "x", "last_ms": WALL_MS + 3_600_000, "ttl_ms": 9000, "final": True}
    await etcd.put(f"{PREFIX}last/0".encode(), json.dumps(ahead).encode())
    for _ in range(4):
        ids = make(etcd, **TWO_IDS)
        async with open_supervisor([ids.spec()]):
            assert ids.machine_id == 1


async def test_restart_keeps_ids_increasing_and_waits_for_nothing(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    ids = make(etcd)
    async with open_supervisor([ids.spec()]) as sup:
        before = ids.next_ids(1000)
        killed_at = trio.current_time()
        kill(sup, "idgen")
        with trio.fail_after(0.5):  # its own last record: no wait for the clock
            while ids.statistics().acquisitions < 2:  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.001)
        assert trio.current_time() - killed_at < 0.5
        after = ids.next_ids(1000)
    assert before + after == sorted(set(before + after))


async def test_wait_ready_times_out_with_machine_id_lost(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    ids = make(etcd)
    with pytest.raises(MachineIdLost, match=r"waited 2s"):
        await ids.wait_ready(timeout=2.0)


async def test_memory_url_gets_a_private_store(autojump_clock: trio.abc.Clock) -> None:
    ids = IdGenerator(settings(), clock=TrioIdClock())
    async with trio.open_nursery() as nursery:
        assert await nursery.start(ids.run) is ids  # also runs without a supervisor
        assert ids.machine_id is not None
        assert ids.next_id() > 0
        nursery.cancel_scope.cancel()
    assert not ids.ready


async def test_one_child_per_generator(etcd: MemoryEtcd, autojump_clock: trio.abc.Clock) -> None:
    ids = make(etcd)
    async with open_supervisor([ids.spec()]):
        with pytest.raises(ChildStartError) as info:
            async with open_supervisor([ids.spec("again")]):
                pass  # pragma: no cover
        assert "already running" in str(info.value.__cause__)


async def test_unreachable_etcd_fails_the_start(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    etcd.fail()
    ids = make(etcd)
    with pytest.raises(ChildStartError) as info:
        async with open_supervisor([ids.spec()]):
            pass  # pragma: no cover
    assert "failing on purpose" in str(info.value.__cause__)
    await etcd.delete(b"\0", b"\0") if False else None
    etcd.fail(False)
    assert await etcd.range(b"/", prefix_end(b"/")) == []
    assert etcd._leases == {}


# -- issue 27 point 13: a late renewal write must not roll the record back ---------------
async def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 (polling a counter, no event to wait on)
            await trio.sleep(0.001)


async def test_a_renewal_applied_late_never_rolls_the_record_back(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    """A renewal whose record write the client gave up on, applied by etcd after newer
    writes, must not lower ``last/<m>``: the next owner starts from it."""
    await hold(etcd, 1)  # only ID 0 is free
    a = make(etcd, **TWO_IDS)
    a_ids: list[int] = []
    async with open_supervisor([a.spec()]):
        a_ids += await take(a, 1000)
        etcd.hold_requests("txn")  # the next renewal's record write: received, not applied
        await wait_until(lambda: etcd.held == 1, TTL)
        etcd.stop_holding()
        renewals = a.statistics().renewals
        await wait_until(lambda: a.statistics().renewals > renewals, TTL)  # retried: ok
        for _ in range(int(2 * TTL)):  # issue on, well past the stale last_ms + ttl_ms
            a_ids += await take(a, 100)
            await trio.sleep(1.0)
        renewals = a.statistics().renewals
        await wait_until(lambda: a.statistics().renewals > renewals, TTL)
        a_ids += await take(a, 100)
        assert etcd.apply_held() == 1  # etcd applies the old write now ...
        etcd.fail()  # ... and a crashes: no final record, no revoke
    etcd.fail(False)
    saved = await record(etcd, 0)
    # every ID of the owner is within last_ms + ttl_ms of its record
    assert isinstance(saved["last_ms"], int)
    assert saved["last_ms"] + TTL * 1000 >= a.parse(max(a_ids)).timestamp_ms
    await trio.sleep(TTL + 1)  # a's lease expires
    b = make(etcd, wall_ms=WALL_MS, **TWO_IDS)  # a host whose clock is behind a's
    async with open_supervisor([b.spec()]):
        assert b.machine_id == 0
        b_ids = await take(b, 1000)
    assert min(b_ids) > max(a_ids)


async def test_a_late_write_landing_before_the_retry_costs_no_machine_id(
    etcd: MemoryEtcd, autojump_clock: trio.abc.Clock
) -> None:
    """The record guard sees the owner's own late write (the record changed under it)
    and goes on with the same claim."""
    ids = make(etcd)
    async with open_supervisor([ids.spec()]):
        etcd.hold_requests("txn")
        await wait_until(lambda: etcd.held == 1, TTL)
        etcd.stop_holding()
        failures = ids.statistics().renewal_failures
        await wait_until(lambda: ids.statistics().renewal_failures > failures, TTL)
        assert etcd.apply_held() == 1  # applied between the timeout and the retry
        renewals = ids.statistics().renewals
        await wait_until(lambda: ids.statistics().renewals > renewals + 2, 2 * TTL)
        assert ids.ready
        assert ids.statistics().acquisitions == 1


async def test_a_margin_just_under_the_bound_leaves_no_gap_with_a_healthy_etcd(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Issue 27 point 14: margins up to 2/3 of lease_ttl are allowed because renewals
    every lease_ttl/3 then keep IDs flowing without a gap (a round trip of 10 ms)."""
    etcd = MemoryEtcd(latency=0.01)
    ids = make(etcd, margin=TTL * 2 / 3 - 0.05)
    async with open_supervisor([ids.spec()]):
        for _ in range(1000):  # 10 lease TTLs, every 90 ms
            assert ids.ready
            ids.next_id()
            await trio.sleep(TTL / 100)
    assert ids.statistics().renewals >= 30


# -- issue 27 point 15: the scan for a free ID must not outlive the lease ---------------
SIXTEEN_IDS = {"timestamp_bits": 47, "machine_bits": 4, "sequence_bits": 12}


async def test_a_host_behind_every_record_still_gets_an_id(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Every free ID's record is far ahead of this host's clock. Trying IDs one by one
    under a fresh lease (a claim and a give-back per ID, 0.1 s each) outlived the lease:
    such a host never got an ID. It takes the one usable soonest, and waits for it."""
    etcd = MemoryEtcd(latency=0.1)
    for m in range(16):  # ID 11's record is the earliest; all are a minute or more ahead
        ahead = {
            "owner": "x",
            "last_ms": WALL_MS + 60_000 + ((m - 11) % 16) * 1000,
            "ttl_ms": 3000,
            "final": True,
        }
        await etcd.put(f"{PREFIX}last/{m}".encode(), json.dumps(ahead).encode())
    ids = make(etcd, lease_ttl=3.0, margin=0.5, **SIXTEEN_IDS)
    async with open_supervisor([ids.spec()]):
        assert ids.machine_id == 11
        assert ids.parse(ids.next_id()).timestamp_ms > WALL_MS + 60_000
        assert ids.statistics().acquisitions == 1


class RacedEtcd(MemoryEtcd):
    """Right after the first lease is granted, another process claims ``taken``."""

    def __init__(self, taken: list[int], **options: Any) -> None:
        super().__init__(**options)
        self.taken = taken

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        granted = await super().lease_grant(ttl)
        taken, self.taken = self.taken, []
        if taken:
            latency, self.latency = self.latency, 0.0
            other, _ = await super().lease_grant(10**7)
            for m in taken:
                await self.put(f"{PREFIX}{m}".encode(), b'{"owner":"other"}', lease=other)
            self.latency = latency
        return granted


async def test_the_lease_is_kept_alive_while_claims_fail(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The scan is stale by the time the claims run (15 of 16 IDs were claimed by
    others meanwhile): 15 failed claims of 0.25 s each outlast the 3 s lease unless
    it is kept alive meanwhile."""
    etcd = RacedEtcd(list(range(15)), latency=0.25)
    for m in range(16):  # all ahead: tried by how soon they are usable, 0 first
        ahead = {"owner": "x", "last_ms": WALL_MS + 60_000 + m * 1000, "ttl_ms": 3000}
        await etcd.put(f"{PREFIX}last/{m}".encode(), json.dumps({**ahead, "final": True}).encode())
    ids = make(etcd, lease_ttl=3.0, margin=0.5, **SIXTEEN_IDS)
    async with open_supervisor([ids.spec()]):
        assert ids.machine_id == 15
        assert ids.statistics().acquisitions == 1


# -- issue 28 mutant: the keepalive's `sent` read after its reply --------------------------
class RecordingEtcd(MemoryEtcd):
    """Notes when each keepalive was sent (on the trio clock, the generator's too)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.keepalives_sent: list[float] = []

    async def lease_keepalive(self, lease: int) -> int | None:
        self.keepalives_sent.append(trio.current_time())
        return await super().lease_keepalive(lease)


async def test_the_deadline_counts_from_the_keepalives_send_with_latency(
    autojump_clock: trio.abc.Clock,
) -> None:
    """0.2 s each way: etcd refreshed the lease 0.2 s after the keepalive was sent, the
    keeper learns it 0.4 s after (and the record write takes 0.4 s more). IDs may be
    issued until send + TTL - margin, not reply + TTL - margin."""
    etcd = RecordingEtcd(latency=0.4)
    ids = make(etcd)
    async with open_supervisor([ids.spec()]):
        for n in range(1, 4):  # the acquisition's renewal, then three more
            with trio.fail_after(TTL):
                while ids.statistics().renewals <= n:  # noqa: ASYNC110 (a counter)
                    await trio.sleep(0.001)
            sent = etcd.keepalives_sent[-1]
            assert trio.current_time() == pytest.approx(sent + 0.8, abs=0.002)  # 2 trips
            assert ids.statistics().valid_until == pytest.approx(sent + TTL - MARGIN)
