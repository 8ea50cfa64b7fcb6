"""supervisors.testing: ChaosMonkey, fault plans, replayable traces, the pytest plugin."""

from __future__ import annotations

import contextlib
import fnmatch
import math
import random
import re
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisors import (
    Actor,
    ActorCrashed,
    ActorStopped,
    Backoff,
    CallTimeout,
    ChildExited,
    ChildNotFound,
    ChildSpec,
    ChildStarted,
    ChildStartError,
    ChildStartFailed,
    ChildState,
    Event,
    ExitReason,
    Health,
    HealthChanged,
    MailboxFull,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    SupervisorStopped,
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
from supervisors.testing._tree import matches

from ._helpers import Recorder, until


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
        [*counters(ledger), monkey.spec()], max_restarts=1000, max_seconds=1, backoff=None
    ) as sup:
        await trio.sleep(30)
        assert len(monkey.kills) > 20
        assert {path for _, path in monkey.kills} <= set(NAMES)
        assert "chaos" not in {path for _, path in monkey.kills}
        await sup.terminate_child("chaos")
        await until(sup, lambda: sup.health().ready)
    assert ledger.twice == []


def test_chaos_monkey_bad_input() -> None:
    with pytest.raises(ValueError, match="rate must be a finite number > 0"):
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


def held_at_a_kill(kind: str) -> tuple[Ledger, list[Any]]:
    """Actor ``c`` (mailbox of 1) whose next ``kind`` message is held 2 s by a delay,
    and killed 1 s into the plan."""
    ledger = Ledger()
    plan = FaultPlan([DelayMessages("c", delay=2.0, count=1, kind=kind), KillAt(1.0, "c")])
    return ledger, [actor_spec("c", Counter, "c", ledger, mailbox_size=1), plan.spec()]


async def test_a_held_call_goes_back_first_in_line_even_with_a_full_mailbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    _, specs = held_at_a_kill("call")
    async with open_supervisor(specs, backoff=None), trio.open_nursery() as nursery:
        nursery.start_soon(whereis("c").cast, "fills the mailbox")
        t0 = trio.current_time()
        # held at the kill, answered first by the next incarnation (before the cast)
        assert await whereis("c").call("get", timeout=5) == 0
        assert trio.current_time() - t0 == pytest.approx(1.0)
        assert await whereis("c").call("get", timeout=5) == 1  # the cast was handled


async def test_a_cast_held_by_a_delay_survives_a_kill_with_a_full_mailbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ledger, specs = held_at_a_kill("cast")
    async with open_supervisor(specs) as sup:
        whereis("c").cast_nowait("held")  # taken and held by the delay
        await trio.sleep(0.5)
        whereis("c").cast_nowait("fills the mailbox")
        assert await whereis("c").call("get", timeout=5) == 2  # both handled, none lost
        assert sup.which_children()[0].restarts == 1
    assert ledger.counted == {"c": 2}


def test_fault_plan_bad_input() -> None:
    with pytest.raises(TypeError, match="not a fault"):
        FaultPlan(["kill"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"KillAt\.at must be a number >= 0"):
        FaultPlan([KillAt(-1, "x")])
    with pytest.raises(ValueError, match="kind must be any/call/cast"):
        FaultPlan([DropMessages("x", kind="both")])


def planned_effects(plan: FaultPlan) -> int:
    """How many rows ``plan.applied`` gets once every fault has taken effect."""
    return sum(1 if isinstance(f, KillAt) else f.count for f in plan.faults)


async def _drive(name: str) -> None:
    """Steady traffic to one actor (casts and calls), so message faults have something
    to act on; one task per actor keeps each actor's message order deterministic."""
    ref = whereis(name)
    for i in range(10_000):
        with contextlib.suppress(MailboxFull):
            ref.cast_nowait(i)
        with contextlib.suppress(CallTimeout, ActorCrashed, ActorStopped):
            await ref.call("get", timeout=0.5)
        await trio.sleep(0.05)


async def _chaos_run(seed: int) -> tuple[str, FaultPlan]:
    ledger = Ledger()
    trace = EventTrace()
    monkey = ChaosMonkey(rate=3.0, seed=seed)
    plan = FaultPlan.random(seed, NAMES, duration=8.0, faults=6)
    backoff = Backoff(initial=0.05, maximum=1.0, jitter=0.5)
    with trio.move_on_after(10):
        async with (
            open_supervisor(
                [*counters(ledger), monkey.spec(), plan.spec()],
                max_restarts=10_000,
                max_seconds=1,
                backoff=backoff,
                seed=seed,
                on_event=trace,
            ),
            trio.open_nursery() as nursery,
        ):
            for name in NAMES:
                nursery.start_soon(_drive, name)
    return trace.digest(), plan


def _replay(seed: int) -> tuple[str, FaultPlan]:
    return trio.run(_chaos_run, seed, clock=trio.testing.MockClock(autojump_threshold=0))


def test_the_same_seed_replays_the_same_trace_20_times() -> None:
    runs = [_replay(42) for _ in range(20)]
    assert len({digest for digest, _ in runs}) == 1
    for _, plan in runs:  # the plan really ran: every planned fault took effect
        assert plan.pending == []
        assert len(plan.applied) == planned_effects(plan)
    assert len({tuple(plan.applied) for _, plan in runs}) == 1
    other, _ = _replay(43)
    assert other != runs[0][0]


@pytest.mark.parametrize("seed", [43, 1, 2, 3])
def test_the_chaos_run_applies_every_planned_fault(seed: int) -> None:
    _, plan = _replay(seed)
    assert plan.pending == []
    assert len(plan.applied) == planned_effects(plan)


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


async def _worker(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


async def test_the_monkey_never_kills_its_ancestors(autojump_clock: trio.testing.MockClock) -> None:
    monkey = ChaosMonkey(rate=5.0, seed=1)
    inner = supervisor_spec(
        "g",
        [ChildSpec("w", _worker), monkey.spec()],
        max_restarts=10_000,
        max_seconds=1,
    )
    outer = supervisor_spec("top", [inner], max_restarts=10_000, max_seconds=1)
    async with open_supervisor([outer, ChildSpec("x", _worker)], max_restarts=10_000):
        await trio.sleep(20)
    victims = {path for _, path in monkey.kills}
    assert victims == {"top/g/w", "x"}


async def test_a_restarted_monkey_continues_its_random_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    monkey = ChaosMonkey(rate=2.0, seed=3, max_kills=12)
    children = [ChildSpec("a", _worker), ChildSpec("b", _worker), monkey.spec()]
    async with open_supervisor(
        children, strategy=Strategy.ONE_FOR_ALL, max_restarts=10_000, max_seconds=1, backoff=None
    ) as sup:
        t0 = trio.current_time()
        await until(sup, lambda: len(monkey.kills) == 12)
    # every kill restarts the monkey too; its draws go on as if it never had been
    rng = random.Random(3)
    expected: list[tuple[Any, str]] = []
    at = 0.0
    for _ in range(12):
        at += rng.expovariate(2.0)
        expected.append((pytest.approx(at), rng.choice(["a", "b"])))
    assert [(t - t0, path) for t, path in monkey.kills] == expected


async def test_the_monkey_never_kills_chaos_children(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plan = FaultPlan([KillAt(100.0, "w")])
    first, second = ChaosMonkey(rate=5.0, seed=2), ChaosMonkey(rate=5.0, seed=4)
    children = [ChildSpec("w", _worker), plan.spec(), first.spec(), second.spec("chaos-2")]
    async with open_supervisor(children, max_restarts=10_000, max_seconds=1):
        await trio.sleep(20)
    assert {path for _, path in first.kills + second.kills} == {"w"}


async def test_a_restarted_plan_keeps_its_schedule(autojump_clock: trio.testing.MockClock) -> None:
    rec = Recorder()
    plan = FaultPlan([KillAt(1.0, "a"), KillAt(3.0, "b")])
    children = [ChildSpec("a", _worker), ChildSpec("b", _worker), plan.spec()]
    async with open_supervisor(
        children, strategy=Strategy.ONE_FOR_ALL, max_restarts=100, on_event=rec
    ):
        t0 = trio.current_time()
        await trio.sleep(10)  # each kill restarts the plan too (ONE_FOR_ALL)
    kills = [(e.path, e.time - t0) for e in rec.of(ChildExited) if e.reason is ExitReason.KILLED]
    assert kills == [("a", 1.0), ("b", 3.0)]
    assert plan.applied == [(1.0, "kill a"), (3.0, "kill b")]
    assert plan.pending == []


async def test_plan_applied_times_share_one_base(autojump_clock: trio.testing.MockClock) -> None:
    ledger = Ledger()
    plan = FaultPlan([DropMessages("c0", start=2.0, kind="call"), KillAt(3.0, "c0")])
    async with open_supervisor(counters(ledger)[:1]) as sup:
        await trio.sleep(5)
        await sup.start_child(plan.spec())
        assert plan.started_at == trio.current_time()
        await trio.sleep(2.5)
        with pytest.raises(CallTimeout):
            await whereis("c0").call("get", timeout=0.25)
        await trio.sleep(1)
    assert plan.applied == [(2.5, "drop call to c0"), (3.0, "kill c0")]


async def test_include_exclude_globs(autojump_clock: trio.testing.MockClock) -> None:
    def pick(**options: Any) -> list[str]:
        return ChaosMonkey(1.0, **options).candidates("chaos")

    async with open_supervisor(counters(Ledger())):
        assert pick() == ["c0", "c1", "g", "g/c2", "g/c3"]
        assert pick(include=["*"]) == ["c0", "c1", "g"]  # `*` stays within one level
        assert pick(include=["g/*"]) == ["g/c2", "g/c3"]
        assert pick(include=["**"], exclude=["g"]) == ["c0", "c1"]  # g and its subtree
        assert pick(include=["c?", "g/c[3-9]"]) == ["c0", "c1", "g/c3"]


@given(
    path=st.lists(st.text("ab", max_size=3), min_size=1, max_size=3).map("/".join),
    pattern=st.text("ab*?/", max_size=6),
)
def test_globs_match_level_by_level_as_fnmatch(path: str, pattern: str) -> None:
    # `*` and `?` never match "/": a glob matches iff the path has as many levels and
    # each level matches as fnmatch would match it
    levels, globs = path.split("/"), pattern.split("/")
    expected = len(levels) == len(globs) and all(
        fnmatch.fnmatchcase(level, glob) for level, glob in zip(levels, globs, strict=True)
    )
    assert matches(path, [re.sub(r"\*+", "*", pattern)]) == expected


async def test_the_chaos_fixture_can_start_two_monkeys(
    supervisor: Supervisor, chaos: Any, autojump_clock: trio.testing.MockClock
) -> None:
    ledger = Ledger()
    for spec in counters(ledger)[:2]:
        await supervisor.start_child(spec)
    first = await chaos(rate=1.0, include=["c0"])
    second = await chaos(rate=1.0, include=["c1"])
    await trio.sleep(20)
    assert {path for _, path in first.kills} == {"c0"}
    assert {path for _, path in second.kills} == {"c1"}
    assert [info.id for info in supervisor.which_children()] == ["c0", "c1", "chaos", "chaos-2"]


async def test_a_random_plan_aims_message_faults_at_actors_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    paths = ["g", "c0"]

    def aims_at_g(seed: int) -> bool:
        return any(
            isinstance(f, DelayMessages | DropMessages) and f.path == "g"
            for f in FaultPlan.random(seed, paths, faults=6).faults
        )

    seed = next(s for s in range(100) if aims_at_g(s))
    plan = FaultPlan.random(seed, paths, faults=6)
    async with open_supervisor([*counters(Ledger()), plan.spec()]):
        message_faults = [f for f in plan.faults if isinstance(f, DelayMessages | DropMessages)]
        assert message_faults
        assert {f.path for f in message_faults} == {"c0"}
        assert len(plan.faults) == 6


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (
            HealthChanged(supervisor="", time=0, child="a", status=Health.DEGRADED, reason=""),
            HealthChanged(supervisor="", time=0, child="a", status=Health.FAILED, reason=""),
        ),
        (
            ChildStartFailed(supervisor="", time=0, child="a", exception=ValueError()),
            ChildStartFailed(supervisor="", time=0, child="a", exception=KeyError()),
        ),
        (
            SupervisorStopped(supervisor="", time=0, reason="shutdown"),
            SupervisorStopped(supervisor="", time=0, reason="cancelled"),
        ),
        (
            ChildStarted(supervisor="", time=0, child="a", incarnation=1),
            ChildStarted(supervisor="", time=0, child="a", incarnation=2),
        ),
    ],
)
def test_the_trace_digest_tells_runs_apart(one: Event, other: Event) -> None:
    first, second = EventTrace(), EventTrace()
    first(one)
    second(other)
    assert first.digest() != second.digest()


async def test_a_kill_waiting_for_its_target_does_not_hold_back_later_kills(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plan = FaultPlan([KillAt(1.0, "a"), KillAt(2.0, "b")])
    children = [ChildSpec("a", _worker), ChildSpec("b", _worker)]
    async with open_supervisor(children) as sup:
        await sup.terminate_child("a")  # a's kill waits for a next incarnation...
        await sup.start_child(plan.spec())
        await trio.sleep(5)
        assert plan.applied == [(2.0, "kill b")]  # ...b's kill is on time all the same
        assert plan.pending == [KillAt(1.0, "a")]
        await sup.restart_child("a")
        await until(sup, lambda: plan.pending == [])
        assert plan.applied == [(2.0, "kill b"), (5.0, "kill a")]


@pytest.mark.parametrize("rate", [math.nan, math.inf, -math.inf])
def test_chaos_monkey_rejects_a_rate_that_is_not_finite(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be a finite number > 0"):
        ChaosMonkey(rate)


@pytest.mark.parametrize(
    "fault",
    [
        KillAt(math.nan, "c"),
        DelayMessages("c", delay=-1.0),
        DelayMessages("c", delay=math.nan),
        DelayMessages("c", delay=1.0, start=math.nan),
        DelayMessages("c", delay=1.0, start=-1.0),
        DropMessages("c", start=math.nan),
        DropMessages("c", start=-0.5),
    ],
    ids=repr,
)
def test_fault_plan_rejects_times_that_are_nan_or_negative(fault: Any) -> None:
    # before: accepted, then a ValueError from trio.sleep crashed the target actor
    # (a negative delay) or the plan itself (a NaN kill time) at run time
    with pytest.raises(ValueError, match="must be a number >= 0"):
        FaultPlan([fault])


@pytest.mark.parametrize("path", ["nope", "dup"])
async def test_a_kill_at_an_unknown_or_ambiguous_path_fails_the_plans_start(
    path: str, autojump_clock: trio.testing.MockClock
) -> None:
    # before: an ambiguous id made the plan crash at the kill and again at each restart,
    # until the tree under test gave up; an unknown path never fired, silently
    children = [supervisor_spec(g, [ChildSpec("dup", _worker)]) for g in ("x", "y")]
    async with open_supervisor(children) as sup:
        with pytest.raises(ChildStartError) as info:
            await sup.start_child(FaultPlan([KillAt(1.0, path)]).spec())
        assert isinstance(info.value.__cause__, ChildNotFound)
        await trio.sleep(2)
        assert sup.health().live


async def test_a_message_held_at_a_kill_is_delayed_only_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handled: list[tuple[float, Any]] = []

    class Noter(Actor):
        async def handle_cast(self, message: Any) -> None:
            handled.append((trio.current_time(), message))

    plan = FaultPlan([DelayMessages("n", delay=2.0, count=2), KillAt(1.0, "n")])
    async with open_supervisor([actor_spec("n", Noter), plan.spec()], backoff=None):
        t0 = trio.current_time()
        whereis("n").cast_nowait("m1")  # held 2 s, killed after 1 s
        whereis("n").cast_nowait("m2")
        await trio.sleep(10)
    # m1 goes first to the next incarnation (t=1); m2, the second of the two
    # messages to delay, is held its 2 s
    assert [(t - t0, m) for t, m in handled] == [(1.0, "m1"), (3.0, "m2")]
    assert [text for _, text in plan.applied] == [
        "delay cast to n by 2s",
        "kill n",
        "delay cast to n by 2s",
    ]


def test_two_kills_at_one_instant_replay_whatever_trios_scheduler_draws() -> None:
    # a and b die at one instant: which one the supervisor takes as the cause of the
    # ONE_FOR_ALL restart (and names when it gives up) is whichever trio ran first
    async def run() -> str:
        trace = EventTrace()
        plan = FaultPlan([KillAt(1.0, "a"), KillAt(1.0, "b")])
        children = [ChildSpec("a", _worker), ChildSpec("b", _worker), plan.spec()]
        with contextlib.suppress(RestartIntensityExceeded):  # the same way each time
            async with open_supervisor(
                children,
                strategy=Strategy.ONE_FOR_ALL,
                max_restarts=1,
                backoff=None,
                on_event=trace,
            ):
                await trio.sleep(2)
        return trace.digest()

    scheduler = trio._core._run._r  # what trio shuffles each batch of runnable tasks with
    saved = scheduler.getstate()
    digests = set()
    try:
        for draw in range(10):  # as ten processes replaying the same plan would
            scheduler.seed(draw)
            digests.add(trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0)))
    finally:
        scheduler.setstate(saved)
    assert len(digests) == 1


async def test_a_shut_gate_holds_kills_and_lets_messages_through(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ledger = Ledger()
    shut = trio.Event()
    plan = FaultPlan(
        [DropMessages("c0", kind="call"), KillAt(1.0, "c1")], gate=lambda: not shut.is_set()
    )
    shut.set()
    async with open_supervisor([*counters(ledger), plan.spec()]) as sup:
        assert await whereis("c0").call("get", timeout=1) == 0  # not dropped
        await trio.sleep(2)
        assert [info.restarts for info in sup.which_children()[:2]] == [0, 0]
    assert plan.applied == []
    assert plan.pending == list(plan.faults)


def test_a_random_plan_takes_a_gate() -> None:
    def gate() -> bool:
        return True

    assert FaultPlan.random(1, ["a"], gate=gate).gate is gate
    assert FaultPlan.random(1, ["a"]).gate is None


def test_no_kill_lands_after_the_gate_shuts_at_its_instant() -> None:
    # The gate shuts at the very instant a kill is due: in some of trio's batch orders
    # the kill runs first (it landed before), never after.
    async def run() -> list[tuple[float, str]]:
        shut = trio.Event()
        plan = FaultPlan([KillAt(1.0, "a"), KillAt(1.0, "b")], gate=lambda: not shut.is_set())
        children = [ChildSpec("a", _worker), ChildSpec("b", _worker), plan.spec()]
        async with open_supervisor(children, max_restarts=100):
            assert plan.started_at is not None
            await trio.sleep_until(plan.started_at + 1.0)
            shut.set()
            before = len(plan.applied)
            await trio.sleep(2)
        return plan.applied[before:]

    scheduler = trio._core._run._r  # what trio shuffles each batch of runnable tasks with
    saved = scheduler.getstate()
    late: list[tuple[float, str]] = []
    try:
        for draw in range(10):
            scheduler.seed(draw)
            late.extend(trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0)))
    finally:
        scheduler.setstate(saved)
    assert late == []
