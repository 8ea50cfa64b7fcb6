"""open_test_service: the whole service in memory and virtual time, faults at hand (issue 21)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from sqlalchemy import text

import gochat_actors
from gochat_actors import CacheMiss, CacheTimeout, LockLost, MachineIdLost, Service
from gochat_actors.db import MemoryDB, MemoryServer
from gochat_actors.lock import Lease
from gochat_actors.mq import Message
from gochat_actors.testing import (
    ServiceFaultPlan,
    TestService,
    in_memory_settings,
    open_test_service,
)
from supervisors.testing import ChaosMonkey, EventTrace


async def test_the_issue_snippet(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_service() as svc:  # every component in memory, on the trio clock
        assert isinstance(svc, Service)
        svc.faults.cache.pause()
        svc.faults.cache.resume()  # like kill -STOP / -CONT
        svc.faults.etcd.pause()
        svc.faults.broker.pause()
        svc.faults.db.primary.pause()
        svc.faults.db.replica(0).delay = 3.0
        svc.faults.resume_all()
        await svc.ids.wait_ready()
        assert svc.ids.next_id() > 0


async def test_every_component_is_on_the_services_own_servers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service(db_replicas=1) as svc:
        assert [c.id for c in svc.supervisor.which_children()] == [
            "bridge",
            "log",
            "metrics",
            "db",
            "cache",
            "locks",
            "ids",
            "producer",
        ]
        assert str(svc.settings.cache.url) == "memory://"
        assert svc.settings.mq.is_memory
        assert list(svc.faults.servers()) == [
            "broker",
            "cache",
            "db.primary",
            "db.replica-0",
            "etcd",
        ]
        # the cache and the locks share the store
        await svc.cache.set("k", b"v")
        assert svc.faults.cache.keys() == ["k"]
        async with svc.locks.hold("job", ttl=5):
            assert sorted(svc.faults.cache.keys()) != ["k"]
        # the replica lags as told. Writes from other tasks: reads from this one may go
        # to a replica at once (no read-your-writes to wait for).

        async def write(statement: str) -> None:
            async with svc.db.transaction() as session:
                await session.execute(text(statement))

        async def count() -> int:
            async with svc.db.reader() as session:
                return int((await session.execute(text("SELECT COUNT(*) FROM t"))).scalar_one())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write, "CREATE TABLE t (id INTEGER PRIMARY KEY)")
        await trio.sleep(10)  # the probes admit the replica, which has the table
        svc.faults.db.replica(0).delay = 3.0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write, "INSERT INTO t VALUES (1)")
        assert await count() == 0  # read on the replica, 3 s behind
        await trio.sleep(4)
        assert await count() == 1


async def test_the_broker_is_the_services_own_and_its_consumers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[bytes | None] = []

    async def processor(msg: Message) -> None:
        got.append(msg.value)

    async with open_test_service() as svc:
        await svc.add_child(svc.consumer_spec("c", topics=["t"], group_id="g", processor=processor))
        svc.faults.broker.pause()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(svc.producer.send, "t", b"late")  # waits (10 s at most)
            await trio.sleep(5)
            assert got == []
            svc.faults.broker.resume()
        await trio.sleep(5)
        assert got == [b"late"]


def test_settings_sections_are_pointed_at_memory() -> None:
    settings = gochat_actors.load_settings(
        cache={"url": "redis://127.0.0.1:6379/0", "key_prefix": "app:"},
        lock={"url": "redis://127.0.0.1:6379/1", "default_ttl": 7.0},
        mq={"brokers": "127.0.0.1:9092"},
        idgen={"etcd": "http://127.0.0.1:2379", "lease_ttl": 6.0},
        db={
            "primary": "mysql+aiomysql://u@127.0.0.1/app",
            "replicas": ["mysql+aiomysql://u@127.0.0.1:3307/app"],
            "max_lag": 2.0,
        },
    )
    memory = in_memory_settings(settings)
    assert str(memory.cache.url) == "memory://"
    assert memory.cache.key_prefix == "app:"
    assert not memory.lock.url.reveal()
    assert memory.lock.default_ttl == 7.0
    assert memory.mq.is_memory
    assert str(memory.idgen.etcd) == "memory://"
    assert memory.idgen.lease_ttl == 6.0
    assert memory.db == MemoryDB().settings(replicas=1, max_lag=2.0)
    assert in_memory_settings(settings, db_replicas=0).db.replicas == ()
    with pytest.raises(ValueError, match="db_replicas"):
        in_memory_settings(settings, db_replicas=-1)


# -- the Tests section of issue 21 -------------------------------------------------------


async def test_a_lock_stays_held_for_12_ttls_and_is_lost_in_time_when_the_cache_pauses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service() as svc:
        async with svc.locks.hold("job", ttl=10.0) as lease:
            await trio.sleep(120.0)  # 12 TTLs: renewed all along
            assert lease.held
            assert lease.renewals >= 12
        ended: list[float] = []
        leases: list[Lease] = []

        async def job() -> None:
            async with svc.locks.hold("job", ttl=10.0) as lease:
                leases.append(lease)
                await trio.sleep(4.0)
                svc.faults.cache.pause()  # renewals hang: the lease must end on its own
                try:
                    await trio.sleep(3600)
                finally:
                    ended.append(trio.current_time())

        with pytest.raises(LockLost):
            await job()
        [lease] = leases
        assert ended[0] < lease.renewed_at + lease.ttl  # cancelled before the TTL ended
        assert svc.faults.cache.paused
        svc.faults.cache.resume()
        async with svc.locks.hold("job", ttl=10.0, wait=30.0) as again:
            assert again.token > lease.token


async def test_ids_stop_at_the_lease_while_etcd_is_paused_and_go_on_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service() as svc:
        await svc.ids.wait_ready()
        ttl = svc.settings.idgen.lease_ttl
        issued = [svc.ids.next_id() for _ in range(10)]
        svc.faults.etcd.pause()
        paused_at = trio.current_time()
        during: list[tuple[float, int]] = []
        refused = 0
        while trio.current_time() < paused_at + 60.0:
            try:
                during.append((trio.current_time(), svc.ids.next_id()))
            except MachineIdLost:
                refused += 1
            await trio.sleep(0.25)
        assert refused > 0
        assert all(at < paused_at + ttl for at, _ in during)  # nothing past the lease
        svc.faults.etcd.resume()
        await svc.ids.wait_ready(timeout=60.0)
        after = [svc.ids.next_id() for _ in range(10)]
        every = issued + [i for _, i in during] + after
        assert every == sorted(every)
        assert len(set(every)) == len(every)  # no duplicate


# -- whole-service deterministic simulation ----------------------------------------------


async def _chaos_run(seed: int, messages: int = 60) -> tuple[str, Any]:
    """A consumer persisting to the DB, a producer, a fault plan: (digest, results)."""
    trace = EventTrace()
    persisted: set[int] = set()

    async def persist(msg: Message) -> None:
        assert msg.value is not None
        async with svc.db.transaction(timeout=5.0) as session:
            await session.execute(
                text("INSERT OR IGNORE INTO chat (n) VALUES (:n)"), {"n": int(msg.value)}
            )
        persisted.add(int(msg.value))

    async with open_test_service(on_event=trace, seed=seed, max_restarts=1000) as svc:
        async with svc.db.transaction() as session:
            await session.execute(text("CREATE TABLE chat (n INTEGER PRIMARY KEY)"))
        await svc.add_child(
            svc.consumer_spec(
                "persister", topics=["chat"], group_id="g", processor=persist, retries=10
            )
        )
        plan = await svc.fault_plan(seed, duration=30.0, faults=12)
        for n in range(messages):
            while True:  # at least once: a send that fails or hangs is sent again
                with trio.move_on_after(2.0):
                    try:
                        await svc.producer.send("chat", str(n).encode())
                        break
                    except gochat_actors.GochatError:
                        pass
                await trio.sleep(0.1)
            await trio.sleep(0.5)
        await trio.sleep(40.0)  # past the plan; the consumer catches up
        async with svc.db.reader(consistent=True) as session:
            rows = (await session.execute(text("SELECT n FROM chat ORDER BY n"))).scalars()
            stored = list(rows)
        assert not plan.pending, plan.pending
    results = (stored, sorted(persisted), plan.applied, trio.current_time())
    return trace.digest(), results


def _replay(seed: int, draw: int) -> tuple[str, Any]:
    scheduler = trio._core._run._r  # what trio shuffles each batch of runnable tasks with
    saved = scheduler.getstate()
    try:
        scheduler.seed(draw)  # as another process replaying the seed would draw
        return trio.run(_chaos_run, seed, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        scheduler.setstate(saved)


def test_a_fault_plan_over_the_service_replays_from_its_seed() -> None:
    runs = [_replay(7, draw) for draw in range(3)]
    digest, results = runs[0]
    assert all(run == runs[0] for run in runs), [r[0] for r in runs]
    stored, persisted, applied, _ = results
    assert stored == list(range(60)) == persisted  # nothing lost, none twice
    kinds = {text.split()[0] for _, text in applied}
    assert {"kill", "pause", "resume"} <= kinds
    other, _ = _replay(8, 0)
    assert other != digest


async def test_fault_plan_arguments_are_checked(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_service() as svc:
        with pytest.raises(ValueError, match="unknown servers"):
            await svc.fault_plan(1, servers=["redis"])
        with pytest.raises(ValueError, match="duration"):
            await svc.fault_plan(1, duration=0)
        with pytest.raises(ValueError, match="faults"):
            await svc.fault_plan(1, faults=-1)
        plan = await svc.fault_plan(3, duration=5.0, faults=8, servers=["cache"], exclude=["**"])
        assert isinstance(plan, ServiceFaultPlan)
        assert {p.server for p in plan.pauses} <= {"cache"}
        assert plan.kills is not None
        assert plan.kills.faults == ()  # nothing may be killed
        await trio.sleep(6.0)
        assert not plan.pending
        assert not svc.faults.cache.paused
        assert [t for _, t in plan.applied] == ["pause cache", "resume cache"] * (
            len(plan.applied) // 2
        )


async def test_the_plan_resumes_what_it_paused_when_it_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service() as svc:
        plan = await svc.fault_plan(
            5, duration=100.0, faults=20, servers=["db.primary"], exclude=["**"], max_pause=50
        )
        longest = max(plan.pauses, key=lambda p: p.duration)
        await trio.sleep(longest.at + longest.duration / 2)
        assert svc.faults.db.primary.paused
        await svc.supervisor.terminate_child("fault-plan")
        assert not svc.faults.servers()["db.primary"].paused
        assert plan.pending


async def test_a_chaos_monkey_in_the_test_service(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_service(max_restarts=1000) as svc:
        monkey = ChaosMonkey(2.0, seed=1, exclude=["bridge", "log", "metrics"])
        await svc.add_child(monkey.spec())
        await trio.sleep(30)
        assert len(monkey.kills) > 20
        await svc.supervisor.terminate_child("chaos")
        await trio.sleep(10)  # the last victims are back
        assert svc.supervisor.health().ready


def test_the_test_service_is_a_service() -> None:
    assert issubclass(TestService, Service)
    assert MemoryServer is not None


async def test_the_gochat_service_fixture(
    gochat_service: TestService, autojump_clock: trio.testing.MockClock
) -> None:
    await gochat_service.cache.set("k", b"v", ttl=10)
    gochat_service.faults.cache.pause()
    with pytest.raises(CacheTimeout):  # the server hangs: the call gives up in time
        await gochat_service.cache.get("k")
    await trio.sleep(10)
    gochat_service.faults.cache.resume()
    with pytest.raises(CacheMiss):  # expired meanwhile, on the trio clock
        await gochat_service.cache.get("k")


def test_a_seed_replays_the_components_random_draws_and_restores_random() -> None:
    """Keyless messages land on a partition the memory broker draws from ``random``:
    with ``seed=`` the draws replay; the global state is given back at exit."""
    import random

    async def partitions(seed: int) -> list[int]:
        async with open_test_service(seed=seed) as svc:
            await svc.producer.create_topic("seeded", partitions=16)
            got = []
            for i in range(6):
                got.append((await svc.producer.send("seeded", b"%d" % i)).partition)
                await trio.sleep(1.0)  # the sticky partition moves on with each batch
            return got

    random.seed(12345)
    before = random.getstate()
    runs = [trio.run(partitions, 3, clock=trio.testing.MockClock(autojump_threshold=0))]
    assert random.getstate() == before
    runs.append(trio.run(partitions, 3, clock=trio.testing.MockClock(autojump_threshold=0)))
    other = trio.run(partitions, 4, clock=trio.testing.MockClock(autojump_threshold=0))
    assert runs[0] == runs[1]
    assert other != runs[0]
