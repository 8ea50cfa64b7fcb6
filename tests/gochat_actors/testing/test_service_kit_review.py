"""Neighbours of the test-kit defects fixed from issue 21's review (test_service_breaks):
the cases next to each fix, races with shutdown and cancellation, and properties of
any fault plan."""

from __future__ import annotations

import gc
import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

import gochat_actors.db
import gochat_actors.testing._service as test_service_module
from gochat_actors import LockLost, open_service
from gochat_actors.config import Settings
from gochat_actors.db import MemoryDB
from gochat_actors.http import HTTPSettings
from gochat_actors.idgen import IdGenerator, IdGenSettings, MemoryEtcd, TrioIdClock
from gochat_actors.mq import MemoryBroker, Message, MQSettings, consumer_spec
from gochat_actors.testing import (
    PauseServer,
    ServiceFaultPlan,
    ServiceFaults,
    TestService,
    open_test_service,
)
from supervisors import ChildSpec, ChildStartError, open_supervisor, supervisor_spec
from supervisors.testing import FaultPlan, KillAt, kill

NO_HTTP = Settings(http=HTTPSettings(enabled=False))
SERVERS = ["broker", "cache", "db.primary", "db.replica-0", "etcd"]


def _mock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def _failing(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    raise RuntimeError("cannot start")


# -- the IDs replay from the seed ----------------------------------------------------------


async def _ids(seed: int | None, n: int = 5) -> tuple[int | None, list[int]]:
    async with open_test_service(seed=seed) as svc:
        await svc.ids.wait_ready()
        return svc.ids.machine_id, [svc.ids.next_id() for _ in range(n)]


def test_one_seed_gives_the_same_machine_id_and_ids_another_seed_another() -> None:
    first = trio.run(_ids, 1, clock=_mock())
    assert trio.run(_ids, 1, clock=_mock()) == first
    # the draw is deterministic: seeds 1 and 2 are known to pick different IDs
    other = trio.run(_ids, 2, clock=_mock())
    assert other[0] != first[0]


async def test_an_id_generator_with_a_seed_draws_its_machine_id_from_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    picked = []
    for _ in range(2):
        etcd = MemoryEtcd()  # a fresh etcd each time: every machine ID is free
        on_etcd = IdGenSettings.model_validate({"etcd": "memory://"})
        ids = IdGenerator(on_etcd, backend=etcd, clock=TrioIdClock(), seed=42)
        async with open_supervisor([ids.spec("ids")]):
            await ids.wait_ready()
            picked.append(ids.machine_id)
    assert picked[0] == picked[1]


@pytest.mark.parametrize("seed", [True, 1.5, "1"])
def test_an_id_generator_seed_must_be_an_int(seed: Any) -> None:
    with pytest.raises(TypeError, match="seed"):
        IdGenerator(IdGenSettings(), seed=seed)


async def _lease_lost_then_ids(seed: int) -> tuple[list[int | None], list[int]]:
    """etcd paused past the lease: the machine ID is drawn again, from the seed."""
    async with open_test_service(seed=seed, max_restarts=1000) as svc:
        await svc.ids.wait_ready()
        machine_ids = [svc.ids.machine_id]
        svc.faults.etcd.pause()
        await trio.sleep(60)
        svc.faults.etcd.resume()
        await svc.ids.wait_ready(timeout=60)
        machine_ids.append(svc.ids.machine_id)
        return machine_ids, [svc.ids.next_id() for _ in range(3)]


def test_ids_after_a_lost_lease_replay_from_the_seed() -> None:
    runs = [trio.run(_lease_lost_then_ids, 3, clock=_mock()) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]


# -- the MemoryDB is closed, however the service ends ---------------------------------------


@pytest.fixture
def made_memorydbs(monkeypatch: pytest.MonkeyPatch) -> list[MemoryDB]:
    made: list[MemoryDB] = []

    class Recorded(MemoryDB):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            made.append(self)

    monkeypatch.setattr(test_service_module, "MemoryDB", Recorded)
    monkeypatch.setattr(gochat_actors.db, "MemoryDB", Recorded)  # embedded_db's import
    return made


def _open_engines(memdbs: list[MemoryDB]) -> list[str]:
    return [name for m in memdbs for name, s in m.servers.items() if s._engine is not None]


async def _write(svc: Any) -> None:
    async with svc.db.transaction() as session:
        await session.execute(text("CREATE TABLE t (x INTEGER)"))


@pytest.mark.parametrize("opener", [open_test_service, lambda **o: open_service(NO_HTTP, **o)])
async def test_the_memorydb_is_closed_when_a_later_child_fails_to_start(
    autojump_clock: trio.testing.MockClock,
    made_memorydbs: list[MemoryDB],
    opener: Callable[..., Any],
) -> None:
    with pytest.raises(ChildStartError):
        async with opener(children=[ChildSpec("bad", _failing)]):
            pass  # pragma: no cover
    assert made_memorydbs
    assert _open_engines(made_memorydbs) == []


@pytest.mark.parametrize("opener", [open_test_service, lambda **o: open_service(NO_HTTP, **o)])
async def test_the_memorydb_is_closed_when_the_body_is_cancelled_or_fails(
    autojump_clock: trio.testing.MockClock,
    made_memorydbs: list[MemoryDB],
    opener: Callable[..., Any],
) -> None:
    with trio.move_on_after(5):
        async with opener() as svc:
            await _write(svc)
            await trio.sleep_forever()

    async def failing_body() -> None:
        async with opener() as svc:
            await _write(svc)
            raise KeyError("the test's own failure")

    with pytest.raises(KeyError):
        await failing_body()
    assert made_memorydbs
    assert _open_engines(made_memorydbs) == []


async def test_no_unclosed_database_is_reported_after_a_test_service(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Python >= 3.13 reports a SQLite connection collected unclosed (ResourceWarning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with open_test_service(db_replicas=1) as svc:
            await _write(svc)
            async with svc.db.reader(consistent=True) as session:
                await session.execute(text("SELECT * FROM t"))
        del svc
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# -- the servers' switches keep the manager's metrics ---------------------------------------


async def test_every_db_switch_leaves_the_managers_metrics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service(db_replicas=2) as svc:
        await _write(svc)
        faults = svc.faults.db
        for name in ("primary", "replica-0", "replica-1"):
            assert faults.servers[name].metrics is not None, name
        faults.primary.pause()
        faults.replica(0).delay = 1.0
        faults.replica(1).stop_replication()
        svc.faults.servers()
        svc.faults.resume_all()
        for name in ("primary", "replica-0", "replica-1"):
            assert faults.servers[name].metrics is not None, name


def test_a_switch_reached_before_any_manager_makes_the_server_without_metrics() -> None:
    with MemoryDB() as memdb:
        assert memdb.primary.metrics is None
        assert memdb.replica(3) is memdb.servers["replica-3"]
        assert memdb.primary is memdb.primary  # made once


# -- the locks are on the faults' store -----------------------------------------------------


async def test_locks_without_the_cache_component_hang_with_the_cache_switch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service(components=["locks"]) as svc:
        assert "cache" in svc.faults.servers()
        times: list[float] = []

        async def job() -> None:
            async with svc.locks.hold("job", ttl=10.0):
                times.append(trio.current_time())
                svc.faults.cache.pause()  # the renewals hang: the lease must end on its own
                try:
                    await trio.sleep(60)
                finally:
                    times.append(trio.current_time())

        with pytest.raises(LockLost):
            await job()
        assert times[1] - times[0] < 10.0  # the body was cancelled before the TTL ran out
        svc.faults.cache.resume()


async def test_open_service_locks_without_the_cache_have_a_store_of_their_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_service(NO_HTTP, components=["locks"]) as svc, svc.locks.hold("j", ttl=5):
        assert svc.locks.store is not None


# -- the servers of the started components only ---------------------------------------------

EXPECTED = {
    "db": {"db.primary", "db.replica-0"},
    "cache": {"cache"},
    "locks": {"cache"},
    "ids": {"etcd"},
    "producer": set(),
}


@settings(max_examples=20, deadline=None)
@given(components=st.sets(st.sampled_from(sorted(EXPECTED))), seed=st.integers(0, 2**16))
def test_servers_and_plans_follow_the_started_components(components: set[str], seed: int) -> None:
    expected = {"broker"}.union(*(EXPECTED[c] for c in components))

    async def run() -> None:
        # an iterator: read once by the test service, once by open_service
        async with open_test_service(
            components=iter(sorted(components)), db_replicas=1, max_restarts=1000
        ) as svc:
            assert set(svc.faults.servers()) == expected
            plan = await svc.fault_plan(seed, duration=5.0, faults=10, exclude=["**"])
            assert {p.server for p in plan.pauses} <= expected
            await trio.sleep(6)
            paused = {text.split()[1] for _, text in plan.applied}
            assert paused <= expected

    trio.run(run, clock=_mock())


async def test_components_as_a_string_is_a_type_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for opener in (open_test_service, lambda **o: open_service(NO_HTTP, **o)):
        with pytest.raises(TypeError, match="components"):
            async with opener(components="cache"):
                pass  # pragma: no cover


def test_resume_all_does_not_make_db_servers() -> None:
    with MemoryDB() as memdb:
        faults = ServiceFaults(
            db=memdb,
            cache=gochat_actors.cache.MemoryStore(),
            etcd=MemoryEtcd(),
            broker=MemoryBroker(),
            replicas=0,
            components=["cache"],
        )
        faults.resume_all()
        assert memdb.servers == {}
        assert list(faults.servers()) == ["broker", "cache"]


# -- fault plan arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"servers": "cache"}, TypeError, "servers must be a list"),
        ({"servers": b"cache"}, TypeError, "servers must be a list"),
        ({"servers": 3}, TypeError, "servers must be a list"),
        ({"seed": None}, TypeError, "seed"),
        ({"seed": True}, TypeError, "seed"),
        ({"seed": 1.0}, TypeError, "seed"),
        ({"duration": True}, TypeError, "duration"),
        ({"duration": "10"}, TypeError, "duration"),
        ({"duration": math.nan}, ValueError, "duration"),
        ({"duration": math.inf}, ValueError, "duration"),
        ({"max_pause": True}, TypeError, "max_pause"),
        ({"max_pause": False}, TypeError, "max_pause"),
        ({"max_pause": 0}, ValueError, "max_pause"),
        ({"faults": True}, ValueError, "faults"),
        ({"include": "**"}, TypeError, "include"),
    ],
)
async def test_fault_plan_arguments_are_typed(
    autojump_clock: trio.testing.MockClock, options: dict[str, Any], error: type, match: str
) -> None:
    async with open_test_service() as svc:
        seed = options.pop("seed", 1)
        with pytest.raises(error, match=match):
            await svc.fault_plan(seed, **options)
        assert [c.id for c in svc.supervisor.which_children()][-1] == "producer"  # no plan


async def test_a_server_named_twice_is_one_server(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_service() as svc:
        plan = await svc.fault_plan(4, faults=20, servers=("cache", "cache"), exclude=["**"])
        assert {p.server for p in plan.pauses} == {"cache"}


# -- any fault plan: properties -------------------------------------------------------------


async def _plan_run(
    seed: int,
    duration: float,
    faults: int,
    max_pause: float,
    servers: list[str],
    stop_at: float | None,
) -> tuple[Any, list[tuple[float, str]], dict[str, bool], dict[str, bool]]:
    """A plan over the servers (and kills of a victim); the service left at ``stop_at``
    (None: after the plan). Returns the plan, the order the servers saw, whether each
    server was paused when the last child's cleanup ran, and after the service."""
    seen: list[tuple[float, str]] = []
    at_cleanup: dict[str, bool] = {}
    async with open_test_service(db_replicas=1, max_restarts=10_000) as svc:
        for name, server in svc.faults.servers().items():

            def spy(server: Any = server, name: str = name) -> None:
                pause, resume = server.pause, server.resume

                def paused() -> None:
                    if not server.paused:
                        seen.append((trio.current_time(), f"pause {name}"))
                    pause()

                def resumed() -> None:
                    if server.paused:
                        seen.append((trio.current_time(), f"resume {name}"))
                    resume()

                server.pause, server.resume = paused, resumed

            spy()

        async def victim(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            await trio.sleep_forever()

        await svc.add_child(ChildSpec("victim", victim))
        plan = await svc.fault_plan(
            seed, duration=duration, faults=faults, servers=servers, max_pause=max_pause,
            include=["victim"],
        )  # fmt: skip

        async def last(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(0.5)  # a plan still running would pause meanwhile
                    at_cleanup.update({n: s.paused for n, s in svc.faults.servers().items()})

        await svc.add_child(ChildSpec("last", last, shutdown=5.0))
        await trio.sleep(duration + 2.0 if stop_at is None else stop_at)
        stopped_at = trio.current_time()
    after = {n: s.paused for n, s in svc.faults.servers().items()}
    assert all(t <= stopped_at for t, _ in seen), "paused or resumed after the exit began"
    return plan, seen, at_cleanup, after


plans = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32),
        "duration": st.sampled_from([1.0, 10.0]),
        "faults": st.integers(0, 40),
        "max_pause": st.sampled_from([0.001, 0.01, 0.5, 2.5, 10.0]),
        "servers": st.lists(st.sampled_from(SERVERS), min_size=1, unique=True),
        "stop_at": st.none() | st.floats(0.0, 11.0),
    }
)


@settings(max_examples=40, deadline=None)
@given(case=plans)
@example(  # a 0 s pause inside another (test_service_breaks' seed 19)
    case={"seed": 19, "duration": 1.0, "faults": 40, "max_pause": 0.01, "servers": ["cache"],
          "stop_at": None}
)  # fmt: skip
def test_any_fault_plan_resumes_every_pause_in_order_and_leaves_servers_running(
    case: dict[str, Any],
) -> None:
    plan, seen, at_cleanup, after = trio.run(lambda: _plan_run(**case), clock=_mock())
    applied = plan.applied
    assert not any(after.values()), after  # running after the service exits
    assert not any(at_cleanup.values()), at_cleanup  # ...and while its children stop
    times = [t for t, _ in applied]
    assert times == sorted(times)  # applied in time order
    # each server: pause, resume, pause, resume... (every pause followed by its resume,
    # unless the service stopped first), as the servers saw them, in the same order
    served = [text for _, text in applied if not text.startswith("kill")]
    t0 = plan.started_at
    assert [what for _, what in seen[: len(served)]] == served
    assert [round(t - t0, 9) for t, _ in seen[: len(served)]] == [
        t for t, w in applied if not w.startswith("kill")
    ]
    # then only the resumes of the service's exit (faults.close()), if it left mid-pause
    assert all(what.startswith("resume ") for _, what in seen[len(served) :])
    for name in case["servers"]:
        kinds = [w.split()[0] for _, w in seen if w.endswith(f" {name}")]
        assert kinds == ["pause", "resume"] * (len(kinds) // 2)  # every pause resumed
        for t, what in applied:  # never resumed inside one of its planned pauses
            if what == f"resume {name}":
                inside = [
                    p
                    for p in plan.pauses
                    if p.server == name and p.at < t - 1e-9 and t + 1e-9 < p.at + p.duration
                ]
                assert not inside, (t, inside)
    if case["stop_at"] is None:  # (a kill may wait for its victim's next incarnation)
        assert [p for p in plan.pending if isinstance(p, PauseServer)] == []


async def test_applied_keeps_a_kill_and_a_pause_of_one_instant_in_their_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    order: list[str] = []  # the effects as they were applied

    class Logged(list[tuple[float, str]]):
        def append(self, row: tuple[float, str]) -> None:
            order.append(row[1])
            super().append(row)

    async with open_test_service(max_restarts=100) as svc:

        async def victim(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            await trio.sleep_forever()

        await svc.add_child(ChildSpec("victim", victim))
        plan = ServiceFaultPlan(svc.faults, 1, duration=2.0, count=0, servers=["cache"])
        # one pause of the cache and one kill, both at 1.0 s
        plan.pauses = (PauseServer(1.0, "cache", 0.5),)
        plan._steps = [(1.0, 0, 0, "cache", 1), (1.5, 1, 0, "cache", -1)]
        plan.kills = FaultPlan([KillAt(1.0, "victim")])
        plan.kills.applied = Logged()
        record = plan._record

        def logged(text: str, t0: float) -> None:
            order.append(text)
            record(text, t0)

        plan._record = logged  # type: ignore[method-assign]
        await svc.supervisor.start_child(plan.spec())
        await trio.sleep(3)
    assert [text for _, text in plan.applied] == order
    assert sorted(order) == ["kill victim", "pause cache", "resume cache"]
    assert [t for t, _ in plan.applied] == [1.0, 1.0, 1.5]


# -- shutdown and close mid-plan ------------------------------------------------------------


async def test_close_ends_a_running_plan_and_nothing_is_paused_or_killed_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service(max_restarts=1000) as svc:
        plan = await svc.fault_plan(
            6, duration=20.0, faults=40, servers=["cache", "etcd"], max_pause=5.0
        )
        await trio.sleep(7.3)
        applied = list(plan.applied)
        svc.faults.close()
        assert svc.faults.closed
        assert not any(s.paused for s in svc.faults.servers().values())
        await trio.sleep(20.0)
        assert plan.applied == applied  # not one more effect
        # a plan started after close() pauses nothing and kills nothing
        late = await svc.fault_plan(7, duration=5.0, faults=40, id="late")
        await trio.sleep(6.0)
        assert late.applied == []


async def test_a_plan_restarted_mid_pause_does_not_pause_again_once_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service(max_restarts=1000) as svc:
        plan = await svc.fault_plan(
            5, duration=100.0, faults=20, servers=["db.primary"], exclude=["**"], max_pause=50
        )
        longest = max(plan.pauses, key=lambda p: p.duration)
        await trio.sleep(longest.at + longest.duration / 2)
        assert svc.faults.db.primary.paused
        svc.faults.close()
        kill(svc.supervisor, "fault-plan")  # it comes back (TRANSIENT, killed)
        await trio.sleep(1)
        assert not svc.faults.db.primary.paused


@pytest.mark.parametrize("leave_at", [0.0, 0.5, 1.0, 1.2, 2.0, 3.3])
async def test_cancelling_the_test_service_mid_plan_leaves_nothing_paused(
    autojump_clock: trio.testing.MockClock, leave_at: float
) -> None:
    services: list[TestService] = []
    with trio.move_on_after(leave_at):
        async with open_test_service(max_restarts=1000) as svc:
            services.append(svc)
            await svc.fault_plan(
                3, duration=10.0, faults=40, exclude=["**"], servers=["db.primary"], max_pause=3
            )
            await trio.sleep_forever()
    for svc in services:  # (none when cancelled while it starts)
        assert not svc.faults.db.primary.paused
        assert svc.faults.closed


# -- consumers follow the service's broker ---------------------------------------------------


async def _deliver(svc: Any, spec: ChildSpec, got: list[bytes | None]) -> list[bytes | None]:
    await svc.add_child(spec)
    await svc.producer.send("t", b"1")
    await trio.sleep(10)
    return got


def _keeper(got: list[bytes | None]) -> Any:
    async def keep(msg: Message) -> None:
        got.append(msg.value)

    return keep


async def test_a_memory_consumer_with_its_own_broker_keeps_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[bytes | None] = []
    other = MemoryBroker()
    async with open_test_service() as svc:
        spec = consumer_spec(
            "c", topics=["t"], group_id="g", processor=_keeper(got),
            settings=MQSettings(), broker=other,
        )  # fmt: skip
        assert await _deliver(svc, spec, got) == []  # not the service's broker


async def test_a_memory_consumer_in_open_service_reads_its_producer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[bytes | None] = []
    async with open_service(NO_HTTP) as svc:
        spec = consumer_spec(
            "c", topics=["t"], group_id="g", processor=_keeper(got), settings=svc.settings.mq
        )
        assert await _deliver(svc, spec, got) == [b"1"]


async def test_a_consumer_follows_its_own_service_when_added_from_another(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # a task started inside service A (its context bound to A) adds consumers to B
    got: list[bytes | None] = []
    send, receive = trio.open_memory_channel[TestService](1)

    async def adder() -> None:
        b = await receive.receive()
        nested = supervisor_spec(
            "nested", [consumer_spec("c2", topics=["t"], group_id="g2", processor=_keeper(got))]
        )
        await b.add_child(consumer_spec("c", topics=["t"], group_id="g", processor=_keeper(got)))
        await b.add_child(nested)

    async with open_test_service() as a, trio.open_nursery() as nursery:
        nursery.start_soon(adder)
        async with open_test_service() as b:
            await send.send(b)
            await trio.sleep(1)
            await b.producer.send("t", b"b")
            await a.producer.send("t", b"a")
            await trio.sleep(10)
            assert sorted(got, key=repr) == [b"b", b"b"]  # c and nested/c2, both on B's broker
            # killed, each comes back on B's broker still
            kill(b.supervisor, "c")
            kill(b.supervisor, "nested/c2")
            await trio.sleep(5)
            await b.producer.send("t", b"b2")
            await trio.sleep(10)
            assert sorted(got, key=repr) == [b"b", b"b", b"b2", b"b2"]


async def test_a_consumer_outside_any_service_uses_the_runs_broker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[bytes | None] = []
    spec = consumer_spec("c", topics=["t"], group_id="g", processor=_keeper(got))
    async with open_supervisor([spec]):
        from gochat_actors.mq import Producer

        producer = Producer(MQSettings())
        async with open_supervisor([producer.spec("p")]):
            await producer.send("t", b"x")
            await trio.sleep(5)
    assert got == [b"x"]


def test_test_service_is_exported() -> None:
    assert TestService.__test__ is False
