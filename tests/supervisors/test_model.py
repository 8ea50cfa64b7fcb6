"""A model-based test of the supervisor, the way OTP's supervisor was checked with
QuickCheck: Hypothesis drives random sequences of operations (start_child,
terminate_child, restart_child, delete_child, crashes, normal returns, children that
overstay their stop, slow or failing starts, a child operating on itself, races of two
operations at one instant, shutdown) over the three strategies and the three restart
types, and after every step compares the runtime with the reference model in
``_model.py`` and checks the invariants a user relies on.

How it drives trio: every example runs one ``trio.run`` with a ``MockClock`` (which
never moves by itself) in a thread of its own; each rule hands the trio side an async
function (``trio.from_thread.run``), which starts the operations as tasks and then
*settles*: it waits until every task is blocked, and jumps the clock to the next
deadline, until none is left. So every step ends in a quiet state at a known virtual
time, and the same example replays exactly.

``GOCHAT_MODEL_EXAMPLES`` sets the number of examples (default 200, what ``make test``
runs), ``GOCHAT_MODEL_STEPS`` the most steps in one (default 25); docs/testing.md
gives the longer run to do before a release.
"""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import hypothesis
import hypothesis.strategies as st
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import supervisors
from supervisors import (
    ChildExited,
    ChildOverstayed,
    ChildSpec,
    ChildStarted,
    ChildStartError,
    ChildStartFailed,
    ChildState,
    Event,
    ExitReason,
    Restart,
    RestartIntensityExceeded,
    ShutdownReport,
    Strategy,
    Supervisor,
    SupervisorError,
    SupervisorNotRunning,
    SupervisorStopped,
)
from supervisors.testing import kill

from ._helpers import Boom
from ._model import BUDGET, HANG, START_TIMEOUT, Model

T = TypeVar("T")

EXAMPLES = int(os.environ.get("GOCHAT_MODEL_EXAMPLES", "200"))
STEPS = int(os.environ.get("GOCHAT_MODEL_STEPS", "25"))

Plan = tuple[float, bool] | None
PLANS: st.SearchStrategy[Plan] = st.one_of(
    st.none(),
    st.tuples(st.sampled_from([0.5, 2.5]), st.booleans()),  # 2.5 > START_TIMEOUT: times out
)


class Fake:
    """The child behind one id. The test tells its running incarnation what to do next
    (crash, return, call its own supervisor); ``plan`` shapes its next start; a
    ``stubborn`` one shields itself for ``HANG`` seconds when cancelled."""

    def __init__(self, cid: str, stubborn: bool, plan: Plan = None) -> None:
        self.cid = cid
        self.stubborn = stubborn
        self.plan = plan
        self.alive = 0  # incarnations whose task runs
        self.starts = 0
        self.command = ""
        self.signal: trio.Event | None = None

    async def __call__(
        self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.starts += 1
        self.alive += 1
        try:
            plan, self.plan = self.plan, None
            if plan is not None:
                await trio.sleep(plan[0])
                if not plan[1]:
                    raise Boom(f"{self.cid} cannot start")
            signal = self.signal = trio.Event()
            task_status.started(self.starts)
            try:
                await signal.wait()
            except trio.Cancelled:
                if self.stubborn:
                    with trio.CancelScope(shield=True):
                        await trio.sleep(HANG)
                raise
            command = self.command
            if command == "crash":
                raise Boom(f"{self.cid} crashed")
            if command == "return":
                return
            sup = supervisors.current_child().supervisor
            if command == "terminate":
                await sup.terminate_child(self.cid)
            else:
                await sup.restart_child(self.cid)
            await trio.sleep_forever()  # cancelled by the call above
        finally:
            self.alive -= 1

    def send(self, command: str) -> None:
        assert self.signal is not None
        self.command = command
        self.signal.set()


def _count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


class Harness:
    """One supervisor in one ``trio.run`` (its own thread, a ``MockClock``)."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.clock = trio.testing.MockClock()
        self.recorded: list[Event] = []
        self.streamed: list[Event] = []
        sup.subscribe(self.recorded.append)
        self.stream = sup.events(buffer=0)
        self.sup_error: BaseException | None = None
        self.sup_done = False
        self.run_error: BaseException | None = None
        self.baseline = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self.run_error is not None:
            raise self.run_error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main, clock=self.clock)
        except BaseException as exc:  # reported by close()
            self.run_error = exc
            self._ready.set()

    async def _main(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.finished = trio.Event()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self._ready.set()
            await self.finished.wait()
            self.clock.autojump_threshold = 0  # let a failed example's leftovers end
            nursery.cancel_scope.cancel()

    def call(self, afn: Callable[[], Awaitable[T]]) -> T:
        return trio.from_thread.run(afn, trio_token=self.token)

    def close(self) -> None:
        if self.run_error is None:
            trio.from_thread.run_sync(self.finished.set, trio_token=self.token)
        self._thread.join(30)
        assert not self._thread.is_alive()
        if self.run_error is not None:
            raise self.run_error

    @property
    def now(self) -> float:
        return self.clock.current_time()

    # ------------------------------------------------------------ on the trio side

    async def settle(self, until: float = math.inf) -> None:
        """Let everything run; move the clock from deadline to deadline (to ``until`` at
        most) until nothing is left to do."""
        while True:
            await trio.testing.wait_all_tasks_blocked()
            now = trio.current_time()
            step = trio.lowlevel.current_statistics().seconds_to_next_deadline
            if now + step > until:
                if until > now:
                    self.clock.jump(until - now)
                    continue
                return
            if step == math.inf:
                return
            self.clock.jump(max(step, 0.0))

    async def start(self) -> None:
        self.baseline = _count_tasks()
        self.nursery.start_soon(self._read_events)
        await self.nursery.start(self._run_sup)
        await self.settle()

    async def _run_sup(
        self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await self.sup.run(task_status=task_status)
        except Exception as exc:
            self.sup_error = exc
        finally:
            self.sup_done = True

    async def _read_events(self) -> None:
        async for event in self.stream:
            self.streamed.append(event)

    def spawn(self, afn: Callable[[], Awaitable[Any]], results: list[Any]) -> None:
        """Run ``afn`` as a task; its outcome (value or exception) goes to ``results``."""

        async def task() -> None:
            try:
                results.append(await afn())
            except Exception as exc:
                results.append(exc)

        self.nursery.start_soon(task)

    def op(self, afn: Callable[[], Awaitable[Any]]) -> Any:
        """Run one operation and settle; its outcome."""
        results: list[Any] = []

        async def go() -> None:
            self.spawn(afn, results)
            await self.settle()

        self.call(go)
        assert len(results) == 1, "the operation did not finish once everything settled"
        return results[0]

    def tasks_now(self) -> int:
        async def count() -> int:
            return _count_tasks()

        return self.call(count)


def _spec(fake: Fake, restart: Restart) -> ChildSpec:
    return ChildSpec(fake.cid, fake, restart=restart, shutdown=BUDGET, start_timeout=START_TIMEOUT)


class SupervisorMachine(RuleBasedStateMachine):
    """Random operations on one supervisor, checked against the model after each."""

    def __init__(self) -> None:
        super().__init__()
        self.h: Harness | None = None
        self.model: Model | None = None
        self.fakes: dict[str, Fake] = {}
        self.ids = 0
        self.shutdown_checked = False

    # ------------------------------------------------------------ helpers

    @property
    def harness(self) -> Harness:
        assert self.h is not None
        return self.h

    @property
    def m(self) -> Model:
        assert self.model is not None
        return self.model

    def _new_fake(self, stubborn: bool, plan: Plan = None) -> Fake:
        cid = f"c{self.ids}"
        self.ids += 1
        fake = Fake(cid, stubborn, plan)
        self.fakes[cid] = fake
        return fake

    def _pick(self, index: int, states: tuple[ChildState, ...] | None = None) -> str | None:
        """A child (in ``states``), or ``None`` when there is none: the rule then does
        nothing (an ``assume`` would throw the whole example away)."""
        if self.m.stopped:
            return None  # every rule does nothing once the supervisor has stopped
        ids = [c.id for c in self.m.in_order() if states is None or c.state in states]
        return ids[index % len(ids)] if ids else None

    def _running(self, index: int) -> str | None:
        return self._pick(index, (ChildState.RUNNING,))

    # ------------------------------------------------------------ setup

    @initialize(
        strategy=st.sampled_from(list(Strategy)),
        max_restarts=st.integers(0, 3),
        max_seconds=st.sampled_from([1.0, 5.0]),
        initial=st.lists(st.tuples(st.sampled_from(list(Restart)), st.booleans()), max_size=3),
    )
    def start(
        self,
        strategy: Strategy,
        max_restarts: int,
        max_seconds: float,
        initial: list[tuple[Restart, bool]],
    ) -> None:
        self.model = Model(strategy, max_restarts, max_seconds)
        specs = []
        for restart, stubborn in initial:
            fake = self._new_fake(stubborn)
            self.model.add(fake.cid, restart, stubborn)
            specs.append(_spec(fake, restart))
        sup = Supervisor(
            specs,
            strategy=strategy,
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            backoff=None,
        )
        self.h = Harness(sup)
        self.harness.call(self.harness.start)

    def teardown(self) -> None:
        if self.h is None:
            return
        try:
            if not self.m.stopped:
                self._shutdown(None, None)
                self.matches_the_model()
                self.events_in_order()
                self.stops_only_as_the_model_does()
        finally:
            self.h.close()

    # ------------------------------------------------------------ rules

    @rule(restart=st.sampled_from(list(Restart)), stubborn=st.booleans(), plan=PLANS)
    def start_child(self, restart: Restart, stubborn: bool, plan: Plan) -> None:
        if self.m.stopped:
            return
        fake = self._new_fake(stubborn, plan)
        expected = self.m.start_child(fake.cid, restart, stubborn, self.harness.now, plan)
        got = self.harness.op(lambda: self.harness.sup.start_child(_spec(fake, restart)))
        if expected:
            assert got == 1
        else:
            assert isinstance(got, ChildStartError), got

    @rule(index=st.integers(0, 20), plan=PLANS)
    def plan_next_start(self, index: int, plan: Plan) -> None:
        """The child's next start will be slow, time out, or fail."""
        cid = self._pick(index)
        if cid is None:
            return
        self.m.children[cid].plan = plan
        self.fakes[cid].plan = plan

    @rule(index=st.integers(0, 20), normal=st.booleans())
    def exit(self, index: int, normal: bool) -> None:
        """A running child raises (or returns)."""
        cid = self._running(index)
        if cid is None:
            return
        self.m.crash([cid], self.harness.now, normal=normal)
        self._act(lambda: self.fakes[cid].send("return" if normal else "crash"))

    @rule(index=st.integers(0, 20))
    def kill(self, index: int) -> None:
        """supervisors.testing.kill: a running child dies as if it raised (a stubborn one
        once it has shielded itself); any other child is left alone (False)."""
        cid = self._pick(index)
        if cid is None:
            return
        child = self.m.children[cid]
        running = child.state is ChildState.RUNNING
        if running:
            hang = HANG if child.stubborn else 0.0
            self.m.crash([cid], self.harness.now + hang)
        got: list[bool] = []
        self._act(lambda: got.append(kill(self.harness.sup, cid)))
        assert got == [running]

    @rule(first=st.integers(0, 20), second=st.integers(0, 20))
    def crash_two_at_once(self, first: int, second: int) -> None:
        a, b = self._running(first), self._running(second + 1)
        if a is None or b is None or a == b:
            return
        self.m.crash([a, b], self.harness.now)

        def both() -> None:
            self.fakes[a].send("crash")
            self.fakes[b].send("crash")

        self._act(both)

    @rule(index=st.integers(0, 20))
    def crash_and_terminate(self, index: int) -> None:
        """terminate_child(c) at the instant c crashes: terminate wins."""
        cid = self._running(index)
        if cid is None:
            return
        self.m.crash_and_terminate(cid, self.harness.now)
        results: list[Any] = []

        async def go() -> None:
            self.fakes[cid].send("crash")
            self.harness.spawn(lambda: self.harness.sup.terminate_child(cid), results)
            await self.harness.settle()

        self.harness.call(go)
        assert results == [None]

    @rule(index=st.integers(0, 20))
    def terminate_child(self, index: int) -> None:
        cid = self._pick(index)
        if cid is None:
            return
        self.m.terminate_child(cid, self.harness.now)
        assert self.harness.op(lambda: self.harness.sup.terminate_child(cid)) is None

    @rule(index=st.integers(0, 20))
    def restart_child(self, index: int) -> None:
        cid = self._pick(index)
        if cid is None:
            return
        expected = self.m.restart_child(cid, self.harness.now)
        got = self.harness.op(lambda: self.harness.sup.restart_child(cid))
        if expected == "ok":
            assert got == self.fakes[cid].starts
        else:
            assert isinstance(got, ChildStartError), got
            assert ("overstayed" in str(got)) == (expected == "overstay"), got

    @rule(index=st.integers(0, 20))
    def delete_child(self, index: int) -> None:
        cid = self._pick(index)
        if cid is None:
            return
        allowed = self.m.delete_child(cid)

        async def delete() -> None:
            self.harness.sup.delete_child(cid)

        got = self.harness.op(delete)
        if allowed:
            assert got is None, got
        else:
            assert isinstance(got, SupervisorError), got

    @rule(index=st.integers(0, 20), restart=st.booleans())
    def call_own_supervisor(self, index: int, restart: bool) -> None:
        """A running child calls terminate_child / restart_child on itself."""
        cid = self._running(index)
        if cid is None:
            return
        if restart:
            self.m.self_restart(cid, self.harness.now)
        else:
            self.m.self_terminate(cid, self.harness.now)
        self._act(lambda: self.fakes[cid].send("restart" if restart else "terminate"))

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0, 6.0]))
    def wait(self, seconds: float) -> None:
        until = self.harness.now + seconds
        self.harness.call(lambda: self.harness.settle(until))

    @rule(index=st.integers(0, 20), passes=st.integers(0, 3))
    def restart_child_racing_shutdown(self, index: int, passes: int) -> None:
        """restart_child(c), and ``passes`` scheduling passes later shutdown()."""
        cid = self._pick(index)
        if cid is None:
            return
        h = self.harness
        t0 = h.now
        log: list[str] = []
        results: list[Any] = []

        async def restart() -> Any:
            try:
                return await h.sup.restart_child(cid)
            finally:
                log.append("restart")

        snapshot: list[ChildState] = []
        reports: list[Any] = []

        async def go() -> None:
            h.spawn(restart, results)
            for _ in range(passes):
                await trio.lowlevel.checkpoint()
            log.append("shutdown")
            snapshot.append(self._info(cid).state)
            h.sup.shutdown_nowait()  # now, not when the task below first runs
            h.spawn(h.sup.shutdown, reports)
            await h.settle()

        h.call(go)
        got, report = results[0], reports[0]
        begins = t0
        hypothesis.event(
            f"restart_child vs shutdown: {snapshot[0].value if log[0] == 'shutdown' else 'done'}"
        )
        child = self.m.children[cid]
        if log[0] == "restart":
            # It finished before shutdown() was even called: an ordinary restart_child.
            expected = self.m.restart_child(cid, t0)
            assert expected == "ok", (expected, got)
            assert got == self.fakes[cid].starts, (expected, got)
        else:
            assert isinstance(got, SupervisorNotRunning), got
            # How far restart_child got when shutdown() came (public state): stopping
            # the old incarnation, starting the new one, or it has not begun.
            child.restarts = self._info(cid).restarts
            if snapshot[0] is ChildState.STOPPING:
                # restart_child holds the supervisor's lock while it stops the child:
                # the shutdown's stops begin after that one (its budget, if it overstays).
                child.stop_deadline = t0 + BUDGET
                if child.stubborn and child.state is ChildState.RUNNING and not child.dead:
                    begins = t0 + BUDGET
            elif self.fakes[cid].starts > child.starts:
                # A new incarnation: ready at once unless its start is slow (a plan), so
                # running by the time the shutdown stops it.
                child.state = ChildState.RUNNING if child.plan is None else ChildState.STARTING
                if child.plan is not None:
                    child.manual_at, child.manual_plan = t0, child.plan
                child.plan = None
                child.dead = False
                child.starts = self.fakes[cid].starts
        self._after_shutdown(t0, report, begins)

    @rule(
        crash=st.booleans(), pending=st.one_of(st.none(), st.booleans()), index=st.integers(0, 20)
    )
    def shutdown(self, crash: bool, pending: bool | None, index: int) -> None:
        """shutdown(); optionally a child crashes while its supervisor stops, or a
        start_child's start ends (ready, or failed) while its supervisor stops."""
        if self.m.stopped:
            return
        target = None
        if crash:
            # A running child stopped after a stubborn one (which holds the stop for
            # BUDGET): it crashes while that one is being stopped.
            stubborn = [c.order for c in self.m.running() if c.stubborn]
            late = max(stubborn, default=-1)
            candidates = [c.id for c in self.m.running() if c.order < late]
            if pending is not None:
                candidates = [c.id for c in self.m.running()]
            target = candidates[index % len(candidates)] if candidates else None
        self._shutdown(target, pending)

    # ------------------------------------------------------------ shared steps

    def _act(self, action: Callable[[], None]) -> None:
        async def go() -> None:
            action()
            await self.harness.settle()

        self.harness.call(go)

    def _shutdown(self, target: str | None, pending: bool | None) -> None:
        h = self.harness
        t0 = h.now
        results: list[Any] = []
        started: list[Any] = []
        slow: Fake | None = None
        if pending is not None:
            slow = self._new_fake(False, (0.5, pending))  # ends before its stop
            late = self._new_fake(True)

        async def go() -> None:
            if slow is not None:
                h.spawn(lambda: h.sup.start_child(_spec(slow, Restart.PERMANENT)), started)
                await trio.testing.wait_all_tasks_blocked()
                await h.sup.start_child(_spec(late, Restart.PERMANENT))
            h.spawn(h.sup.shutdown, results)
            if target is not None:
                await h.settle(t0 + 0.25)
                self.fakes[target].send("crash")
            await h.settle()

        if slow is not None:
            if pending:
                self.m.add(slow.cid, Restart.PERMANENT, False)
            else:
                self.m.start_failed += 1
            self.m.add(late.cid, Restart.PERMANENT, True)
        if target is not None:
            self.m.children[target].dead = True  # it will have crashed when its turn comes
        h.call(go)
        if slow is not None:
            assert len(started) == 1, started
            assert isinstance(started[0], SupervisorNotRunning), started
        if target is not None:
            crashed = [e for e in h.recorded if isinstance(e, ChildExited) and e.child == target]
            assert crashed, "no ChildExited for a child that crashed while its supervisor stopped"
            assert crashed[-1].reason is ExitReason.EXCEPTION, crashed
            assert not crashed[-1].will_restart
        self._after_shutdown(t0, results[0] if results else None)

    def _after_shutdown(self, t0: float, report: Any, begins: float | None = None) -> None:
        """shutdown() returned ``report`` (it was called at ``t0``; the model's stops
        begin at ``begins``): check it against the model."""
        stopping = [c for c in self.m.in_order() if c.state is ChildState.RUNNING]
        budgets = BUDGET * len(stopping)
        end = self.m.shutdown(t0 if begins is None else begins)
        assert isinstance(report, ShutdownReport), report
        elapsed = report.time - t0
        assert math.isclose(elapsed, end - t0, abs_tol=1e-9), (elapsed, end - t0)
        longest = max((o.overstayed_by for o in report.overstayed), default=0.0)
        assert elapsed <= budgets + longest + 1e-9
        self.shutdown_checked = True

    def _info(self, cid: str) -> Any:
        return next(i for i in self.harness.sup.which_children() if i.id == cid)

    # ------------------------------------------------------------ invariants

    @invariant()
    def matches_the_model(self) -> None:
        if self.h is None:
            return
        h, m = self.harness, self.m
        infos = h.sup.which_children()
        assert [i.id for i in infos] == [c.id for c in m.in_order()]
        assert [i.state for i in infos] == [c.state for c in m.in_order()], [
            (i.id, i.state.value, c.state.value) for i, c in zip(infos, m.in_order(), strict=True)
        ]
        assert [i.restarts for i in infos] == [c.restarts for c in m.in_order()]
        for cid, fake in self.fakes.items():
            child = m.children.get(cid)
            # No TERMINATED (stopped, failed, removed) child runs; a running one runs once.
            running = child is not None and child.state is ChildState.RUNNING
            assert fake.alive == (1 if running else 0), (cid, fake.alive)
            if child is not None:
                assert fake.starts == child.starts, (cid, fake.starts, child.starts)
        kinds = Counter(type(e) for e in h.recorded)
        assert kinds[ChildStartFailed] == m.start_failed
        assert kinds[ChildOverstayed] == m.overstays
        assert h.now >= m.end - 1e-9

    @invariant()
    def events_in_order(self) -> None:
        if self.h is None:
            return
        h = self.harness
        times = [e.time for e in h.recorded]
        assert times == sorted(times)
        incarnations: dict[str, int] = {}
        for event in h.recorded:
            if isinstance(event, ChildStarted):
                assert event.incarnation > incarnations.get(event.child, 0)
                incarnations[event.child] = event.incarnation
        assert h.streamed == h.recorded[: len(h.streamed)]

    @invariant()
    def stops_only_as_the_model_does(self) -> None:
        if self.h is None:
            return
        h, m = self.harness, self.m
        assert h.sup_done == m.stopped
        if not m.stopped:
            assert h.sup_error is None
            return
        hypothesis.event(
            f"stopped: {m.reason}, {m.overstays} overstays, {m.start_failed} failed starts"
        )
        if m.reason == "escalated":
            assert isinstance(h.sup_error, RestartIntensityExceeded), h.sup_error
        else:
            assert h.sup_error is None, h.sup_error
        assert isinstance(h.recorded[-1], SupervisorStopped)
        assert h.recorded[-1].reason == m.reason
        assert isinstance(h.recorded[-2], ShutdownReport)
        assert h.streamed == h.recorded  # the stream got everything and ended
        assert h.tasks_now() == h.baseline, "a task outlived its supervisor"


SupervisorMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)
TestSupervisorModel = SupervisorMachine.TestCase
