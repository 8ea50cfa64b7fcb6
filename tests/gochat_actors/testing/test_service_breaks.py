"""Defects found in open_test_service, its fault plans and the embedded MemoryDB default
(issue 21, adversarial review). Each test asserts the documented behaviour and is a
regression test since its fix."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from gochat_actors import open_service
from gochat_actors.config import Settings
from gochat_actors.http import HTTPSettings
from gochat_actors.mq import Message, consumer_spec
from gochat_actors.testing import PauseServer, TestService, open_test_service
from supervisors import ChildSpec

from .test_service import _replay


def test_a_fault_plan_that_loses_the_id_lease_replays_from_its_seed() -> None:
    # seed 1 pauses etcd past the lease: the machine ID is drawn again, at random
    runs = [_replay(1, draw) for draw in range(3)]
    assert runs[0][1] == runs[1][1] == runs[2][1]  # same results...
    assert runs[0][0] == runs[1][0] == runs[2][0]  # ...and the same digest


async def test_open_test_service_closes_its_memorydb(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service(db_replicas=1) as svc:
        async with svc.db.transaction() as session:
            await session.execute(text("CREATE TABLE t (x INTEGER)"))
        memdb = svc.faults.db
    # MemoryServer.close() drops its engine: Python 3.13 reports the connections of
    # those left open as unclosed (ResourceWarning) when they are collected
    assert [name for name, s in memdb.servers.items() if s._engine is not None] == []


async def test_open_service_closes_its_embedded_memorydb(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_service(Settings(http=HTTPSettings(enabled=False))) as svc:
        async with svc.db.transaction() as session:
            await session.execute(text("CREATE TABLE t (x INTEGER)"))
        backend = svc.db._backend
    servers = backend.servers  # type: ignore[union-attr]
    assert [name for name, s in servers.items() if s._engine is not None] == []


async def test_reaching_a_db_server_through_faults_keeps_its_metrics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service() as svc:
        async with svc.db.transaction() as session:
            await session.execute(text("CREATE TABLE t (x INTEGER)"))
        server = svc.faults.db.servers["primary"]
        assert server.metrics is not None
        svc.faults.db.primary.delay = 0.0  # as the docs show: svc.faults.db.primary...
        assert server.metrics is not None  # db_connections_active is still kept


async def test_faults_cache_reaches_the_locks_without_the_cache_component(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service(components=["locks"]) as svc, svc.locks.hold("job", ttl=5):
        assert svc.faults.cache.keys() != []  # the lock is in the faults' store


async def test_fault_plan_servers_as_a_string_gives_a_clear_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service() as svc:
        with pytest.raises((TypeError, ValueError)) as info:
            await svc.fault_plan(1, servers="cache")
        assert "'a'" not in str(info.value), info.value  # not split into letters


async def test_fault_plan_rejects_seed_none(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_service() as svc:
        with pytest.raises((TypeError, ValueError), match="seed"):
            await svc.fault_plan(None, duration=5.0)  # type: ignore[arg-type]


async def test_fault_plan_rejects_bool_durations(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_service() as svc:
        with pytest.raises((TypeError, ValueError), match="duration"):
            await svc.fault_plan(1, duration=True)


async def test_a_consumer_given_the_test_services_settings_gets_its_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[bytes | None] = []

    async def keep(msg: Message) -> None:
        got.append(msg.value)

    async with open_test_service() as svc:
        spec = consumer_spec(
            "c", topics=["t"], group_id="g", processor=keep, settings=svc.settings.mq
        )
        await svc.add_child(spec)
        await svc.producer.send("t", b"1")
        await trio.sleep(10)
    assert got == [b"1"]


async def _run_plan(seed: int) -> tuple[list[PauseServer], list[tuple[float, str]], bool]:
    async with open_test_service() as svc:
        plan = await svc.fault_plan(
            seed, duration=1.0, faults=40, servers=["cache"], exclude=["**"], max_pause=0.01
        )
        await trio.sleep(2.0)
        return list(plan.pauses), plan.applied, svc.faults.cache.paused


@settings(max_examples=25, deadline=None)
@example(seed=19)
@given(seed=st.integers(0, 2**32))
def test_a_server_is_never_resumed_inside_one_of_its_planned_pauses(seed: int) -> None:
    pauses, applied, paused_at_end = trio.run(
        _run_plan, seed, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    assert not paused_at_end
    kinds = [what for _, what in applied]
    assert kinds == ["pause cache", "resume cache"] * (len(kinds) // 2)
    for t, what in applied:
        if what.startswith("resume"):
            inside = [p for p in pauses if p.at < t - 1e-9 and t + 1e-9 < p.at + p.duration]
            assert not inside, (t, inside)


async def _first_id() -> int:
    async with open_test_service(seed=1) as svc:
        await svc.ids.wait_ready()
        return svc.ids.next_id()


def test_the_ids_of_a_test_service_replay_from_its_seed() -> None:
    ids = {trio.run(_first_id, clock=trio.testing.MockClock(autojump_threshold=0)) for _ in "ab"}
    assert len(ids) == 1, ids


async def test_a_plan_pauses_only_the_servers_of_started_components(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service(components=["cache"], max_restarts=1000) as svc:
        # the broker stays: consumers may still use it without the producer
        assert {"db.primary", "etcd"}.isdisjoint(svc.faults.servers())
        plan = await svc.fault_plan(2, duration=5.0, faults=6)
        assert {p.server for p in plan.pauses} <= {"cache", "broker"}


async def test_a_consumer_added_from_an_outer_task_follows_the_service(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[bytes | None] = []

    async def keep(msg: Message) -> None:
        got.append(msg.value)

    send, receive = trio.open_memory_channel[TestService](1)

    async def adder() -> None:  # e.g. a worker or request handler of the test's own
        svc = await receive.receive()
        await svc.add_child(consumer_spec("c", topics=["t"], group_id="g", processor=keep))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(adder)
        async with open_test_service() as svc:
            await send.send(svc)
            await trio.sleep(1)
            await svc.producer.send("t", b"1")
            await trio.sleep(10)
    assert got == [b"1"]


async def test_no_server_is_paused_again_while_the_test_service_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[bool] = []

    async with open_test_service(max_restarts=1000) as svc:

        async def saver(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):  # its last write, within its budget
                    await trio.sleep(0.2)
                    seen.append(svc.faults.db.primary.paused)
                    async with svc.db.transaction(timeout=10) as session:
                        await session.execute(text("SELECT 1"))

        await svc.fault_plan(
            3, duration=10.0, faults=40, exclude=["**"], servers=["db.primary"], max_pause=3
        )
        await svc.add_child(ChildSpec("saver", saver, shutdown=30.0))
        await trio.sleep(1.3)  # leaves just before a planned pause
    assert seen == [False]
