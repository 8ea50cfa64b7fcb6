"""supervisors.testing: ChaosMonkey, fault plans, replayable traces, the pytest plugin."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisors import (
    Actor,
    ActorCrashed,
    Backoff,
    CallTimeout,
    ChildState,
    MailboxFull,
    Supervisor,
    actor_spec,
    open_supervisor,
    supervisor_spec,
    whereis,
)
from supervisors.testing import (
    ChaosMonkey,
    DelayMessages,
    DropMessages,
    EventTrace,
    FaultPlan,
    KillAt,
)

from ._helpers import until


class Ledger:
    """What the counters did, outside any incarnation: the invariants are checked on it."""

    def __init__(self) -> None:
        self.counted: dict[str, int] = {}
        self.running: set[str] = set()
        self.twice: list[str] = []


class Counter(Actor):
    async def init(self, name: str, ledger: Ledger) -> None:
        if name in ledger.running:
            ledger.twice.append(name)
        ledger.running.add(name)
        self.name = name
        self.ledger = ledger

    async def handle_cast(self, message: Any) -> None:
        self.ledger.counted[self.name] = self.ledger.counted.get(self.name, 0) + 1

    async def handle_call(self, request: Any) -> Any:
        return self.ledger.counted.get(self.name, 0)

    async def terminate(self, reason: BaseException | None) -> None:
        self.ledger.running.discard(self.name)


NAMES = ("c0", "c1", "g/c2", "g/c3")


def counters(ledger: Ledger) -> list[Any]:
    return [
        actor_spec("c0", Counter, "c0", ledger, mailbox_size=50),
        actor_spec("c1", Counter, "c1", ledger, mailbox_size=50),
        supervisor_spec(
            "g",
            [
                actor_spec("c2", Counter, "g/c2", ledger, mailbox_size=50),
                actor_spec("c3", Counter, "g/c3", ledger, mailbox_size=50),
            ],
            max_restarts=1000,
            max_seconds=1,
        ),
    ]


async def test_chaos_monkey_kills_and_the_tree_heals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ledger = Ledger()
    monkey = ChaosMonkey(rate=2.0, seed=11, exclude=["g"])
    async with open_supervisor(
        [*counters(ledger), monkey.spec()], max_restarts=1000, max_seconds=1
    ) as sup:
        await trio.sleep(30)
        assert len(monkey.kills) > 20
        assert {path for _, path in monkey.kills} <= set(NAMES)
        assert "chaos" not in {path for _, path in monkey.kills}
        await sup.terminate_child("chaos")
        await until(sup, lambda: sup.health().ready)
    assert ledger.twice == []


def test_chaos_monkey_bad_input() -> None:
    with pytest.raises(ValueError, match="rate must be a number > 0"):
        ChaosMonkey(0)
    with pytest.raises(TypeError, match="sequences of glob patterns"):
        ChaosMonkey(1, include="db/*")


async def test_fault_plan_drop_delay_and_kill(autojump_clock: trio.testing.MockClock) -> None:
    ledger = Ledger()
    plan = FaultPlan(
        [
            DropMessages("c0", count=1, kind="call"),
            DelayMessages("c1", delay=2.0, count=1),
            KillAt(5.0, "g/c2"),
        ]
    )
    async with open_supervisor([*counters(ledger), plan.spec()]) as sup:
        with pytest.raises(CallTimeout):
            await whereis("c0").call("get", timeout=1)
        assert await whereis("c0").call("get", timeout=1) == 0
        t0 = trio.current_time()
        await whereis("c1").call("get")
        assert trio.current_time() - t0 == pytest.approx(2.0)
        await trio.sleep(5)
        assert [info.restarts for info in sup.which_children()[2:3]] == [0]
        assert any(text == "kill g/c2" for _, text in plan.applied)
    assert [text for _, text in plan.applied] == [
        "drop call to c0",
        "delay call to c1 by 2s",
        "kill g/c2",
    ]


async def test_a_message_held_by_a_delay_when_its_actor_is_killed_is_not_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ledger = Ledger()
    held = [DelayMessages(name, delay=2.0, count=1) for name in ("c0", "c1")]
    plan = FaultPlan([*held, KillAt(1.0, "c0"), KillAt(1.0, "c1")])
    async with open_supervisor([*counters(ledger), plan.spec()], backoff=None) as sup:
        whereis("c0").cast_nowait("held")
        start = trio.current_time()
        # held at the kill, then handled (and answered) by the next incarnation
        assert await whereis("c1").call("get", timeout=5) == 0
        assert trio.current_time() - start == pytest.approx(1.0)
        assert await whereis("c0").call("get", timeout=5) == 1
        assert [info.restarts for info in sup.which_children()[:2]] == [1, 1]
    assert ledger.twice == []


async def test_a_held_call_that_cannot_go_back_to_a_full_mailbox_gets_actor_crashed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ledger = Ledger()
    plan = FaultPlan([DelayMessages("c", delay=2.0, count=1, kind="call"), KillAt(1.0, "c")])
    spec = actor_spec("c", Counter, "c", ledger, mailbox_size=1)
    async with open_supervisor([spec, plan.spec()]), trio.open_nursery() as nursery:
        nursery.start_soon(whereis("c").cast, "fills the mailbox")
        with pytest.raises(ActorCrashed, match="stopped before handling this call"):
            await whereis("c").call("get", timeout=5)
        assert await whereis("c").call("get", timeout=5) == 1  # the cast was handled


def test_fault_plan_bad_input() -> None:
    with pytest.raises(TypeError, match="not a fault"):
        FaultPlan(["kill"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"KillAt\.at must be >= 0"):
        FaultPlan([KillAt(-1, "x")])
    with pytest.raises(ValueError, match="kind must be any/call/cast"):
        FaultPlan([DropMessages("x", kind="both")])


async def _chaos_run(seed: int) -> str:
    ledger = Ledger()
    trace = EventTrace()
    monkey = ChaosMonkey(rate=3.0, seed=seed)
    plan = FaultPlan.random(seed, NAMES, duration=8.0, faults=6)
    backoff = Backoff(initial=0.05, maximum=1.0, jitter=0.5)
    with trio.move_on_after(10):
        async with open_supervisor(
            [*counters(ledger), monkey.spec(), plan.spec()],
            max_restarts=10_000,
            max_seconds=1,
            backoff=backoff,
            seed=seed,
            on_event=trace,
        ):
            await trio.sleep_forever()
    return trace.digest()


def test_the_same_seed_replays_the_same_trace_20_times() -> None:
    digests = {
        trio.run(_chaos_run, 42, clock=trio.testing.MockClock(autojump_threshold=0))
        for _ in range(20)
    }
    assert len(digests) == 1
    other = trio.run(_chaos_run, 43, clock=trio.testing.MockClock(autojump_threshold=0))
    assert other not in digests


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), casts=st.lists(st.sampled_from(NAMES), max_size=60))
def test_generated_fault_plans_keep_the_invariants(seed: int, casts: list[str]) -> None:
    async def scenario() -> None:
        ledger = Ledger()
        plan = FaultPlan.random(seed, NAMES, duration=5.0, faults=8)
        acknowledged: dict[str, int] = {}
        async with open_supervisor(
            [*counters(ledger), plan.spec()], max_restarts=10_000, max_seconds=1
        ) as sup:
            for i, name in enumerate(casts):
                try:
                    whereis(name).cast_nowait(i)
                except MailboxFull:
                    continue
                acknowledged[name] = acknowledged.get(name, 0) + 1
                await trio.sleep(0.1)
            await trio.sleep(6)  # past the plan's last fault and its restarts
            for name in NAMES:  # every acknowledged cast has been handled or dropped
                for _ in range(20):  # a plan drops a bounded number of messages
                    try:
                        await whereis(name).call("sync", timeout=5)
                        break
                    except (CallTimeout, ActorCrashed):
                        continue
                else:
                    pytest.fail(f"{name} never answered")
            health = sup.health()
            assert health.live, health.reasons
            assert health.ready, health.reasons
            states = {info.state for info in sup.which_children() if info.id != "faults"}
            assert states == {ChildState.RUNNING}
        dropped = [text for _, text in plan.applied if text.startswith("drop cast")]
        for name in NAMES:
            lost = sum(1 for text in dropped if text.endswith(f" {name}"))
            assert ledger.counted.get(name, 0) == acknowledged.get(name, 0) - lost
        assert ledger.twice == []

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_plugin_fixtures(
    supervisor: Supervisor, chaos: Any, autojump_clock: trio.testing.MockClock
) -> None:
    ledger = Ledger()
    for spec in counters(ledger)[:2]:
        await supervisor.start_child(spec)
    monkey = await chaos(rate=1.0, seed=5)
    await trio.sleep(20)
    assert monkey.kills
    assert ledger.twice == []
