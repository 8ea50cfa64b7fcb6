"""Third adversarial review of issue 21's test kit (after the kitfix and arch2 fixes):
seeded services side by side, faults after exit, bad delays, replay across processes."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from gochat_actors.mq import Message, consumer_spec
from gochat_actors.testing import TestService, open_test_service
from gochat_actors.testing._service import seeded_random
from supervisors import ChildSpec, SupervisorNotRunning, open_supervisor
from supervisors.testing import KillAt

ROOT = Path(__file__).resolve().parents[3]

# -- two seeded test services side by side in one trio.run ---------------------------------


async def _side_by_side(inside_b: list[float] | None = None) -> None:
    """Service A (seed 1) opens, then B (seed 2); A ends first, then B."""
    a_open, b_open, a_done = trio.Event(), trio.Event(), trio.Event()

    async def a() -> None:
        async with open_test_service(seed=1):
            a_open.set()
            await b_open.wait()
        a_done.set()

    async def b() -> None:
        await a_open.wait()
        async with open_test_service(seed=2):
            b_open.set()
            await a_done.wait()
            if inside_b is not None:
                inside_b.extend(random.random() for _ in range(3))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(a)
        nursery.start_soon(b)


async def test_side_by_side_seeded_services_restore_the_global_random(
    autojump_clock: trio.testing.MockClock,
) -> None:
    random.seed(123)
    before = random.getstate()
    await _side_by_side()
    assert random.getstate() == before


async def test_a_seeded_service_keeps_its_stream_when_an_earlier_one_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service(seed=2):
        expected = [random.random() for _ in range(3)]
    got: list[float] = []
    await _side_by_side(got)
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(st.permutations(range(4)), st.lists(st.integers(0, 3), min_size=4, max_size=4))
def test_seeded_blocks_ending_in_any_order_restore_the_state(
    ends: list[int], seeds: list[int]
) -> None:
    random.seed(99)
    before = random.getstate()
    blocks = [seeded_random(seed) for seed in seeds]
    for block in blocks:
        block.__enter__()
        random.random()
    for n, i in enumerate(ends):
        blocks[i].__exit__(None, None, None)
        if n < len(ends) - 1:
            random.random()  # a block is still open: drawn from a seeded stream
    assert random.getstate() == before


# -- faults after the service exited ---------------------------------------------------------


async def test_a_fault_plan_after_exit_is_refused_typed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service() as svc:
        pass
    with pytest.raises(SupervisorNotRunning):
        await svc.fault_plan(1)


async def test_a_fault_plan_leaves_a_server_the_test_paused_paused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_service() as svc:
        svc.faults.cache.pause()  # the test's own outage, for the whole block
        plan = await svc.fault_plan(3, duration=5.0, faults=8, servers=["cache"], exclude=["**"])
        assert plan.pauses
        await trio.sleep(6.0)
        assert svc.faults.cache.paused


class _Abort(BaseException):
    """Not an Exception: as KeyboardInterrupt or SystemExit would leave the body."""


async def test_a_base_exception_in_the_body_closes_the_db_and_gives_random_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    random.seed(5)
    before = random.getstate()
    caught: BaseException | None = None
    try:
        async with open_test_service(seed=3, db_replicas=1) as svc:
            async with svc.db.transaction() as session:
                await session.execute(text("CREATE TABLE t (x INTEGER)"))
            svc.faults.cache.pause()
            raise _Abort
    except (_Abort, BaseExceptionGroup) as exc:  # trio may group it
        caught = exc
    assert isinstance(caught, _Abort) or (
        isinstance(caught, BaseExceptionGroup) and caught.subgroup(_Abort) is not None
    )
    assert random.getstate() == before
    assert not svc.faults.cache.paused
    assert [n for n, s in svc.faults.db.servers.items() if s._engine is not None] == []


async def _close_at_a_kill() -> list[tuple[float, str]]:
    """close() at the very instant of the plan's first kill: the effects after it."""
    async with open_test_service(max_restarts=1000) as svc:
        plan = await svc.fault_plan(4, duration=10.0, faults=6, servers=[])
        assert plan.kills is not None
        assert plan.started_at is not None
        first = min(fault.at for fault in plan.kills.faults if isinstance(fault, KillAt))
        await trio.sleep_until(plan.started_at + first)
        svc.faults.close()
        before = len(plan.applied)
        await trio.sleep(1.0)
        return plan.applied[before:]


def test_no_kill_lands_after_close_at_the_same_instant() -> None:
    scheduler = trio._core._run._r  # trio's draws for the order of a batch of tasks
    saved = scheduler.getstate()
    try:
        late: list[tuple[int, tuple[float, str]]] = []
        for draw in range(12):
            scheduler.seed(draw)
            after = trio.run(_close_at_a_kill, clock=trio.testing.MockClock(autojump_threshold=0))
            late.extend((draw, effect) for effect in after)
        assert late == []
    finally:
        scheduler.setstate(saved)


# -- bad delays and latencies ----------------------------------------------------------------


@pytest.mark.parametrize("delay", [math.inf, math.nan, -1.0])
async def test_a_produce_delay_that_is_no_duration_is_refused(
    autojump_clock: trio.testing.MockClock, delay: float
) -> None:
    async with open_test_service() as svc:
        with pytest.raises(ValueError, match="delay"):
            svc.faults.broker.set_produce_delay(delay)


async def test_a_nan_db_latency_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_service() as svc:
        with pytest.raises(ValueError, match="latency"):
            svc.faults.db.primary.latency = math.nan


# -- which broker a consumer follows (held) ---------------------------------------------------


def _keeper(got: list[bytes | None]) -> Callable[[Message], Awaitable[None]]:
    async def keep(msg: Message) -> None:
        got.append(msg.value)

    return keep


async def test_a_consumer_in_a_supervisor_of_the_test_opened_before_the_service(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[bytes | None] = []
    async with open_supervisor([]) as mine, open_test_service() as svc:
        await mine.start_child(
            consumer_spec("c", topics=["t"], group_id="g", processor=_keeper(got))
        )
        await trio.sleep(1)
        await svc.producer.send("t", b"x")
        await trio.sleep(10)
        assert got == [b"x"]


async def test_a_test_service_run_by_a_child_of_another_keeps_its_consumers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[bytes | None] = []
    box: list[TestService] = []

    async def runs_inner(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with open_test_service() as inner:
            box.append(inner)
            task_status.started()
            await trio.sleep_forever()

    async with open_test_service() as outer:
        await outer.supervisor.start_child(ChildSpec("inner", runs_inner))
        inner = box[0]
        await inner.add_child(
            consumer_spec("c", topics=["t"], group_id="g", processor=_keeper(got))
        )
        await outer.add_child(
            consumer_spec("c", topics=["t"], group_id="g", processor=_keeper(got))
        )
        await trio.sleep(1)
        await inner.producer.send("t", b"inner")
        await outer.producer.send("t", b"outer")
        await trio.sleep(10)
        assert sorted(got, key=repr) == [b"inner", b"outer"]


# -- replay in other processes ---------------------------------------------------------------

_REPLAY = textwrap.dedent(
    """
    import hashlib, sys, trio, trio.testing
    from tests.gochat_actors.testing.test_service import _chaos_run
    digest, results = trio.run(_chaos_run, 7, clock=trio.testing.MockClock(autojump_threshold=0))
    print(digest, hashlib.sha256(repr(results).encode()).hexdigest())
    """
)


@pytest.mark.slow
def test_a_chaos_run_replays_in_other_processes() -> None:
    """Other hash seeds, other trio scheduler draws (seeded from os.urandom): one run."""
    outs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _REPLAY],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        outs.append(done.stdout.strip().splitlines()[-1])
    assert outs[0] == outs[1]
