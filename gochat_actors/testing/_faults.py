"""A test service's fault switches, and seeded fault plans over the whole service."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from supervisors import ChildSpec, Restart, current_child
from supervisors.testing import ChaosMonkey, FaultPlan

from .._pause import PauseSwitch
from ..cache import MemoryStore
from ..db import MemoryDB
from ..idgen import MemoryEtcd
from ..mq import MemoryBroker

__all__ = ["DEFAULT_SPARED", "PauseServer", "ServiceFaultPlan", "ServiceFaults"]

_ALL_COMPONENTS = ("db", "cache", "locks", "ids", "producer")

DEFAULT_SPARED = ("bridge", "log", "metrics", "http")
"""Children a service fault plan does not kill unless told: the plumbing (the asyncio
bridge, logging, metrics, the HTTP endpoints), not the components under test."""


class ServiceFaults:
    """The switches of a test service's in-memory servers (``kill -STOP`` and more).

    ``cache`` is the store of the cache *and* the locks (as one Redis would be);
    ``db`` the :class:`~gochat_actors.db.MemoryDB` (``db.primary``, ``db.replica(i)``);
    ``etcd`` the machine-ID leases; ``broker`` the producer's and consumers' broker.
    Each has ``pause()`` / ``resume()`` and the switches of its class.

    Example::

        svc.faults.cache.pause()            # cache and lock calls hang
        svc.faults.db.replica(0).delay = 3.0
        svc.faults.cache.resume()
    """

    def __init__(
        self,
        *,
        db: MemoryDB,
        cache: MemoryStore,
        etcd: MemoryEtcd,
        broker: MemoryBroker,
        replicas: int,
        components: Iterable[str] | None = None,
    ) -> None:
        self.db = db
        self.cache = cache
        self.etcd = etcd
        self.broker = broker
        self.replicas = replicas
        self.components = frozenset(_ALL_COMPONENTS if components is None else components)
        """The components that run on these servers (``open_service(components=...)``)."""
        self._closed = trio.Event()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called: no fault plan pauses a server any more."""
        return self._closed.is_set()

    def servers(self) -> dict[str, PauseSwitch]:
        """The servers the service's components use, by name, sorted: ``broker`` (always:
        consumers may use it without the producer), ``cache`` (the cache or the locks),
        ``db.primary`` and ``db.replica-<i>`` (the DB), ``etcd`` (the IDs). Fault plans
        pause these only.

        Example::

            for name, server in svc.faults.servers().items():
                assert not server.paused, name
        """
        used = self.components
        found: dict[str, PauseSwitch] = {"broker": self.broker}
        if used & {"cache", "locks"}:
            found["cache"] = self.cache
        if "db" in used:
            found["db.primary"] = self.db.primary
            for i in range(self.replicas):
                found[f"db.replica-{i}"] = self.db.replica(i)
        if "ids" in used:
            found["etcd"] = self.etcd
        return dict(sorted(found.items()))

    def resume_all(self) -> None:
        """Resume every paused server (those no component uses too).

        Example::

            svc.faults.resume_all()
        """
        switches: list[PauseSwitch] = [self.broker, self.cache, self.etcd]
        switches.extend(self.db.servers.values())  # only those made: no new one
        for server in switches:
            server.resume()

    def close(self) -> None:
        """Resume every server and end the fault plans over them: from now on no plan
        pauses a server, and each running plan stops (resuming what it paused, killing
        nothing more). :func:`open_test_service` calls it when its block ends, before
        the service's children stop: their shutdown work never meets a paused server.

        Example::

            svc.faults.close()
        """
        self._closed.set()
        self.resume_all()

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` is called."""
        await self._closed.wait()


@dataclass(frozen=True, slots=True)
class PauseServer:
    """Pause the server ``server`` (a name of :meth:`ServiceFaults.servers`) ``at``
    seconds into the plan, for ``duration`` seconds."""

    at: float
    server: str
    duration: float


class ServiceFaultPlan:
    """A seeded fault plan over a whole test service: kills of its children (a
    :class:`~supervisors.testing.FaultPlan` drawn by
    :meth:`~supervisors.testing.FaultPlan.random` over the children running when the
    plan starts) and pauses of its in-memory servers (:class:`PauseServer`).

    ``faults`` faults are drawn from ``seed`` over ``duration`` seconds, about half of
    each kind; every pause ends by ``duration`` (at most ``max_pause`` seconds, default
    a quarter of ``duration``). Under ``MockClock`` the same seed replays the same run.
    Times are seconds from the plan's first start (:attr:`started_at`); the plan keeps
    its schedule across restarts of its child, and resumes the servers it paused when
    its child stops (and pauses them again if it comes back within their pause).

    ``include`` / ``exclude`` are :class:`~supervisors.testing.ChaosMonkey` globs on the
    paths that may be killed; ``exclude`` defaults to :data:`DEFAULT_SPARED`. ``servers``
    names the servers that may be paused (default: all of them).

    Example::

        plan = await svc.fault_plan(7, duration=30.0, faults=12)
        await trio.sleep(40)
        print(plan.applied)
    """

    def __init__(
        self,
        faults: ServiceFaults,
        seed: int,
        *,
        duration: float = 10.0,
        count: int = 5,
        include: Sequence[str] = ("**",),
        exclude: Sequence[str] = DEFAULT_SPARED,
        servers: Sequence[str] | None = None,
        max_pause: float | None = None,
    ) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int (the plan replays from it), got {seed!r}")
        duration = _seconds("duration", duration)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"faults must be an int >= 0, got {count!r}")
        if servers is not None and (
            isinstance(servers, str | bytes) or not isinstance(servers, Iterable)
        ):
            raise TypeError(f"servers must be a list of server names, got {servers!r}")
        known = faults.servers()
        names = sorted(known) if servers is None else sorted(set(servers))
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"unknown servers {unknown}; choose from {sorted(known)}")
        longest = duration / 4 if max_pause is None else _seconds("max_pause", max_pause)
        self.seed = seed
        self.duration = float(duration)
        self._faults = faults
        self._monkey = ChaosMonkey(1.0, include=include, exclude=exclude)  # its path filter
        rng = random.Random(seed)
        self._kill_seed = rng.randrange(2**32)
        pauses: list[PauseServer] = []
        kills = 0
        for _ in range(count):
            if not names or rng.random() < 0.5:
                kills += 1
                continue
            at = round(rng.uniform(0, duration), 3)
            length = round(rng.uniform(0, longest), 3)
            pauses.append(PauseServer(at, rng.choice(names), min(length, duration - at)))
        self.pauses: tuple[PauseServer, ...] = tuple(pauses)
        self._kill_count = kills
        self.kills: FaultPlan | None = None
        """The kill plan, drawn when the plan first starts (None before)."""
        # (time, phase, index, server, +1 pause / -1 resume), in the order they are
        # applied: at one instant every pause (phase 0) before any resume (phase 1), so
        # a pause ending when another starts (or lasting 0 s inside another) never
        # resumes its server in the middle of the other.
        self._steps = sorted(
            [(p.at, 0, i, p.server, 1) for i, p in enumerate(pauses)]
            + [(p.at + p.duration, 1, i, p.server, -1) for i, p in enumerate(pauses)]
        )
        self._next = 0
        self._depth: dict[str, int] = {}
        # The servers this plan paused itself: one the test had paused already is left
        # to the test (neither recorded nor resumed by the plan).
        self._paused: set[str] = set()
        # (time, description, how many kills were applied before it): the true order
        self._applied: list[tuple[float, str, int]] = []

    @property
    def started_at(self) -> float | None:
        """The ``trio.current_time()`` of the plan's first start (None before)."""
        return self.kills.started_at if self.kills is not None else None

    @property
    def applied(self) -> list[tuple[float, str]]:
        """``(time, description)`` of every effect so far, in time order: kills, message
        faults, ``pause <server>`` and ``resume <server>``."""
        kills = self.kills.applied if self.kills is not None else []
        merged: list[tuple[float, str]] = []
        taken = 0
        for at, text, kills_before in self._applied:
            merged.extend(kills[taken:kills_before])
            taken = max(taken, kills_before)
            merged.append((at, text))
        merged.extend(kills[taken:])
        return merged

    @property
    def pending(self) -> list[Any]:
        """The faults that have not (fully) taken effect yet."""
        kills = self.kills.pending if self.kills is not None else []
        started = {i for _, _, i, _, sign in self._steps[: self._next] if sign < 0}
        return [*kills, *(p for i, p in enumerate(self.pauses) if i not in started)]

    def spec(self, id: str = "fault-plan", **spec_options: Any) -> ChildSpec:
        """The child that runs the plan: not significant for readiness, ``kind="chaos"``
        (monkeys spare it), ``TRANSIENT``."""
        spec_options.setdefault("significant", False)
        spec_options.setdefault("kind", "chaos")
        spec_options.setdefault("restart", Restart.TRANSIENT)
        return ChildSpec(id, self.run, **spec_options)

    async def run(
        self, *, task_status: trio.TaskStatus[ServiceFaultPlan] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the kill plan, then pause and resume servers at the planned times; end
        (normally: the child is ``TRANSIENT``) when the servers' switches are closed."""
        if self.kills is None:
            paths = self._monkey.candidates(current_child().path)
            if paths and self._kill_count:
                # The gate, not only end_when_closed's cancel: a kill due at the
                # instant of close() may run before that cancel in trio's batch order.
                self.kills = FaultPlan.random(
                    self._kill_seed,
                    paths,
                    duration=self.duration,
                    faults=self._kill_count,
                    gate=self._faults_open,
                )
            else:
                self.kills = FaultPlan([])
        faults = self._faults
        servers = faults.servers()
        try:
            if faults.closed:  # started (or restarted) while the service stops
                task_status.started(self)
                return
            started = False
            async with trio.open_nursery() as nursery:

                async def end_when_closed() -> None:
                    await faults.wait_closed()
                    nursery.cancel_scope.cancel()  # no kill, no pause from now on

                nursery.start_soon(end_when_closed)
                await nursery.start(self.kills.run)
                t0 = self.kills.started_at
                assert t0 is not None
                for name in sorted(self._paused):  # paused when this child stopped last
                    if servers[name].paused:  # the test paused it meanwhile: its own
                        self._paused.discard(name)
                    else:
                        servers[name].pause()
                task_status.started(self)
                started = True
                while self._next < len(self._steps):
                    at, _, _, name, sign = self._steps[self._next]
                    await trio.sleep_until(t0 + at)
                    self._step(servers[name], name, sign, t0)
                    self._next += 1
                await faults.wait_closed()  # (end_when_closed cancels this)
            if not started:  # closed while starting: a plan that ends at once
                task_status.started(self)
        finally:
            for name in self._paused:  # never leave a server hung behind the plan
                servers[name].resume()

    def _step(self, server: PauseSwitch, name: str, sign: int, t0: float) -> None:
        if self._faults.closed:  # the service stops: its servers stay resumed
            return
        depth = self._depth.get(name, 0)
        self._depth[name] = depth + sign
        if sign > 0 and depth == 0:
            if not server.paused:  # else the test's own pause: not the plan's to end
                server.pause()
                self._paused.add(name)
                self._record(f"pause {name}", t0)
        elif sign < 0 and depth == 1 and name in self._paused:
            server.resume()
            self._paused.discard(name)
            self._record(f"resume {name}", t0)

    def _faults_open(self) -> bool:
        """The kill plan's gate: no kill once the servers' switches are closed."""
        return not self._faults.closed

    def _record(self, text: str, t0: float) -> None:
        kills = len(self.kills.applied) if self.kills is not None else 0
        self._applied.append((round(trio.current_time() - t0, 9), text, kills))


def _seconds(name: str, value: object) -> float:
    """``value`` as a finite number of seconds > 0 (a bool is not one)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)
