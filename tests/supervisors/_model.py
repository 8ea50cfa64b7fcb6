"""A small reference model of the supervisor's semantics (OTP's, as docs/supervisors.md
states them), for the model-based test in test_model.py.

It is plain Python with no trio: each operation takes the virtual time at which it
starts and computes, step by step, what the supervisor must do and when (the stops in
reverse order, each taking its budget when the child overstays; the restarts of a wave
in start order; failed starts of restarts counted and restarted in turn; escalation).
The test compares the runtime with it once everything has settled.

The children it knows:

* ``stubborn``: when cancelled it shields itself for ``HANG`` seconds, overstaying its
  ``BUDGET`` (its supervisor moves on after the budget; its restart waits for its end).
* ``plan``: its next start takes ``delay`` seconds and then gets ready (``ok``) or raises;
  a start longer than ``START_TIMEOUT`` times out at the timeout.

Restarts are immediate (``backoff=None``), so every time in the model is a sum of
budgets, start delays and timeouts.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from supervisors import ChildState, Restart, Strategy

__all__ = ["BUDGET", "HANG", "START_TIMEOUT", "MChild", "Model"]

BUDGET = 1.0  # every child's shutdown budget
HANG = 2.5  # how long a stubborn child shields itself when stopped (overstays by 1.5 s)
START_TIMEOUT = 1.75  # every child's start_timeout (never a multiple of BUDGET)

_LIVE = (ChildState.STARTING, ChildState.RUNNING)
_DONE = (ChildState.STOPPED, ChildState.TERMINATED, ChildState.FAILED)


@dataclass
class MChild:
    id: str
    restart: Restart
    order: int
    stubborn: bool = False
    state: ChildState = ChildState.RUNNING
    restarts: int = 0
    starts: int = 1  # incarnations started so far
    plan: tuple[float, bool] | None = None  # the next start: (delay, gets ready)
    busy_until: float = float("-inf")  # when an incarnation that overstayed its stop ends
    wave: int = 0
    stop_deadline: float | None = None  # its stop began earlier (a racing restart_child)
    dead: bool = False  # its incarnation ended on its own (a stop of it takes no time)
    # A start some caller waits for (restart_child) that began at ``manual_at`` with
    # ``manual_plan`` while the supervisor was told to stop.
    manual_at: float | None = None
    manual_plan: tuple[float, bool] | None = None


class Escalated(Exception):
    """The model's supervisor gave up (``RestartIntensityExceeded``)."""


@dataclass
class Model:
    strategy: Strategy
    max_restarts: int
    max_seconds: float
    children: dict[str, MChild] = field(default_factory=dict)
    failures: list[float] = field(default_factory=list)  # times of counted failures
    start_failed: int = 0  # ChildStartFailed events expected so far
    overstays: int = 0  # ChildOverstayed events expected so far
    stopped: bool = False
    reason: str = ""  # SupervisorStopped.reason once stopped
    end: float = 0.0  # when the last thing the latest operation set going has ended
    _order: int = 0
    _waves: int = 0

    # ------------------------------------------------------------ helpers

    def add(self, cid: str, restart: Restart, stubborn: bool) -> MChild:
        child = MChild(cid, restart, self._order, stubborn)
        self._order += 1
        self.children[cid] = child
        return child

    def in_order(self) -> list[MChild]:
        return sorted(self.children.values(), key=lambda c: c.order)

    def running(self) -> list[MChild]:
        return [c for c in self.in_order() if c.state is ChildState.RUNNING]

    def _remove(self, child: MChild) -> None:
        self.children.pop(child.id, None)

    def _stop(self, child: MChild, t: float) -> float:
        """Stop one live child at ``t``; return when its supervisor moves on."""
        if child.dead:
            return t
        if child.stop_deadline is not None:  # waits for the same deadline; reported once
            deadline, child.stop_deadline = child.stop_deadline, None
            if child.state is ChildState.RUNNING and child.stubborn:
                self.overstays += 1
                child.busy_until = deadline - BUDGET + HANG
                return max(t, deadline)
            return t
        if child.state is ChildState.RUNNING and child.stubborn:
            self.overstays += 1
            child.busy_until = t + HANG
            return t + BUDGET
        return t

    def _settled_at(self, t: float) -> float:
        tails = [c.busy_until for c in self.children.values()]
        return max([t, *tails])

    def _start(self, child: MChild, t: float) -> tuple[float, bool]:
        """Start ``child``'s next incarnation at ``t``: (when it is decided, ready?)."""
        child.starts += 1
        child.dead = False
        plan, child.plan = child.plan, None
        if plan is None:
            return t, True
        delay, ok = plan
        if delay >= START_TIMEOUT:
            return t + START_TIMEOUT, False  # timed out (a late started() is refused)
        return t + delay, ok

    # ------------------------------------------------------------ failures

    def _victims(self, child: MChild) -> list[MChild]:
        others = [c for c in self.in_order() if c is not child]
        if self.strategy is Strategy.ONE_FOR_ALL:
            chosen = others
        elif self.strategy is Strategy.REST_FOR_ONE:
            chosen = [c for c in others if c.order > child.order]
        else:
            chosen = []
        wanted = (*_LIVE, ChildState.RESTARTING)
        return [c for c in chosen if c.state in wanted]

    def _fail(self, child: MChild, t: float) -> list[tuple[float, list[MChild]]]:
        """A counted failure of ``child`` at ``t``: the waves to start (time, members)."""
        self.failures.append(t)
        self.failures = [f for f in self.failures if f >= t - self.max_seconds]
        if len(self.failures) > self.max_restarts:
            raise Escalated(t)
        victims = self._victims(child)
        for victim in reversed(victims):
            if victim.state in _LIVE:
                t = self._stop(victim, t)
        self._waves += 1
        wave = [child]
        child.restarts += 1
        child.state = ChildState.RESTARTING
        child.wave = self._waves
        for victim in victims:
            if victim.restart is Restart.TEMPORARY:
                self._remove(victim)  # OTP: a temporary child is never restarted
                continue
            if victim.state is not ChildState.RESTARTING:
                victim.restarts += 1
            victim.state = ChildState.RESTARTING
            victim.wave = self._waves
            wave.append(victim)
        return [(t, sorted(wave, key=lambda c: c.order))]

    def _exit(self, child: MChild, t: float, *, normal: bool) -> list[tuple[float, list[MChild]]]:
        """``child`` (running) ended on its own at ``t``: by returning or raising."""
        restart = child.restart is Restart.PERMANENT or (
            child.restart is Restart.TRANSIENT and not normal
        )
        if not restart:
            child.state = ChildState.STOPPED
            if child.restart is Restart.TEMPORARY:
                self._remove(child)
            return []
        return self._fail(child, t)

    def _run_waves(self, waves: list[tuple[float, list[MChild]]]) -> float:
        """Start the waves' members one after the other; return when all have settled."""
        heap: list[tuple[float, int, int, list[MChild]]] = []
        seq = 0
        for t, members in waves:
            heapq.heappush(heap, (t, members[0].order, seq, members))
            seq += 1
        last = max((t for t, _ in waves), default=float("-inf"))
        while heap:
            t, _, _, members = heapq.heappop(heap)
            member = members[0]
            if (
                self.children.get(member.id) is not member
                or member.state is not ChildState.RESTARTING
            ):
                continue  # absorbed into a later wave
            wave = member.wave
            at = max(t, member.busy_until)
            decided, ok = self._start(member, at)
            last = max(last, decided)
            if ok:
                member.state = ChildState.RUNNING
                rest = [m for m in members[1:] if m.wave == wave and m.id in self.children]
                if rest:
                    heapq.heappush(heap, (decided, rest[0].order, seq, rest))
                    seq += 1
                continue
            self.start_failed += 1
            member.state = ChildState.STARTING  # what _fail sees (stopped, not restarting)
            for new_t, new_members in self._fail(member, decided):
                heapq.heappush(heap, (new_t, new_members[0].order, seq, new_members))
                seq += 1
                last = max(last, new_t)
        return last

    def _handle(self, t: float, waves: list[tuple[float, list[MChild]]]) -> None:
        try:
            t = max(t, self._run_waves(waves))
        except Escalated as esc:
            t = self._stop_all(esc.args[0], "escalated")
        self.end = self._settled_at(t)

    def _stop_all(self, t: float, reason: str) -> float:
        for child in reversed(self.in_order()):
            if child.state is ChildState.STARTING and child.manual_at is not None:
                self._manual_start_ended(child, t)
            if child.state in _LIVE:
                t = self._stop(child, t)
            if child.state not in (ChildState.FAILED, ChildState.STOPPED):
                child.state = ChildState.TERMINATED
        self.stopped = True
        self.reason = reason
        return t

    def _manual_start_ended(self, child: MChild, t: float) -> None:
        """Whether a start its caller waits for ended (ready, failed, timed out) before
        the stop reached the child at ``t``; if not, it is stopped while it starts."""
        at, plan = child.manual_at, child.manual_plan
        child.manual_at = child.manual_plan = None
        assert at is not None
        delay, ok = plan if plan is not None else (0.0, True)
        if t <= at + min(delay, START_TIMEOUT):
            return
        if ok and delay < START_TIMEOUT:
            child.state = ChildState.RUNNING
        else:
            child.state = ChildState.FAILED  # restart_child's failed start
            self.start_failed += 1

    # ------------------------------------------------------------ operations

    def crash(self, ids: list[str], t: float, *, normal: bool = False) -> None:
        """Children (running) raise (or return, ``normal``) at the same instant ``t``."""
        waves: list[tuple[float, list[MChild]]] = []
        pending = sorted((self.children[i] for i in ids), key=lambda c: c.order)
        for child in pending:
            child.dead = True
        try:
            for child in pending:
                if self.children.get(child.id) is not child:
                    continue  # TEMPORARY victim of an earlier exit: removed
                if child.state is not ChildState.RUNNING:
                    continue  # stopped (claimed) as a victim of an earlier exit
                new = self._exit(child, t, normal=normal)
                waves.extend(new)
                if new:
                    t = new[0][0]
        except Escalated as esc:
            self.end = self._settled_at(self._stop_all(esc.args[0], "escalated"))
            return
        self._handle(t, waves)

    def start_child(
        self, cid: str, restart: Restart, stubborn: bool, t: float, plan: tuple[float, bool] | None
    ) -> bool:
        """``start_child``; whether it succeeds (else ``ChildStartError``, spec dropped)."""
        child = self.add(cid, restart, stubborn)
        child.starts = 0
        child.plan = plan
        decided, ok = self._start(child, t)
        if not ok:
            self.start_failed += 1
            self._remove(child)
        self.end = self._settled_at(decided)
        return ok

    def terminate_child(self, cid: str, t: float) -> None:
        child = self.children[cid]
        if child.state in _LIVE:
            t = self._stop(child, t)
        child.state = ChildState.TERMINATED
        self.end = self._settled_at(t)

    def crash_and_terminate(self, cid: str, t: float) -> None:
        """``terminate_child`` at the instant the child raises: terminate wins (the crash
        is not counted, nothing restarts); the child is dead already, so no overstay."""
        self.children[cid].dead = True
        self.children[cid].state = ChildState.TERMINATED
        self.end = self._settled_at(t)

    def restart_child(self, cid: str, t: float) -> str:
        """``restart_child``: "ok", or the error it raises ("start", "overstay")."""
        child = self.children[cid]
        if child.state is ChildState.RUNNING and child.stubborn:
            t = self._stop(child, t)
            child.restarts += 1
            self._waves += 1
            child.state = ChildState.RESTARTING
            child.wave = self._waves
            self._handle(t, [(t, [child])])
            return "overstay"
        child.restarts += 1
        decided, ok = self._start(child, t)
        if ok:
            child.state = ChildState.RUNNING
        else:
            child.state = ChildState.FAILED
            self.start_failed += 1
        self.end = self._settled_at(decided)
        return "ok" if ok else "start"

    def delete_child(self, cid: str) -> bool:
        """``delete_child``: whether it is allowed (else ``SupervisorError``)."""
        child = self.children[cid]
        if child.state not in _DONE:
            return False
        self._remove(child)
        return True

    def self_terminate(self, cid: str, t: float) -> None:
        """The child calls ``terminate_child`` on itself: stopped at once (no overstay:
        it is cancelled inside that call, not where it would shield itself)."""
        self.children[cid].state = ChildState.TERMINATED
        self.end = t

    def self_restart(self, cid: str, t: float) -> None:
        child = self.children[cid]
        child.restarts += 1  # counted per child, not toward intensity
        self._waves += 1
        child.state = ChildState.RESTARTING
        child.wave = self._waves
        self._handle(t, [(t, [child])])

    def shutdown(self, t: float) -> float:
        """``shutdown()`` at ``t``; return when it returns. A child that raises while its
        supervisor stops is only reported: it ends ``TERMINATED`` like the others."""
        end = self._stop_all(t, "shutdown")
        self.end = self._settled_at(end)
        return self.end
