"""Read routing: which server a session opens on. The :class:`ReplicaRouter` holds the
replicas' admission (set by the manager's probe children, ejections by failing reads),
the primary's slot, and each context's last write (read-your-writes); the manager and
the sessions both use it, and neither reaches into the other."""

from __future__ import annotations

import contextvars
import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from .._dsn import Dsn
from .._slot import Slot
from ..log import get_logger
from ._protocol import DBServer
from ._settings import DBSettings

if TYPE_CHECKING:
    from ..metrics import Metrics

__all__ = ["READMIT_MAX", "READMIT_PROBES", "Replica", "ReplicaRouter"]

_log = get_logger("gochat_actors.db")

READMIT_PROBES = 3
"""Passing probes in a row that re-admit an ejected replica (doubled each time it is
ejected again soon after, up to :data:`READMIT_MAX`): no flapping."""

READMIT_MAX = 48


@dataclass(eq=False, slots=True)
class Replica:
    """One replica: its probe's findings, its admission, the reads in flight on it."""

    name: str
    url: Dsn
    server: DBServer | None = None
    admitted: bool = False
    probed: bool = False
    lag: float | None = None
    reason: str = "not probed yet"
    warned_unknown: bool = False
    inflight: dict[trio.CancelScope, float] = field(default_factory=dict)
    """Calls waiting on this replica, each with the time it started (oldest first)."""
    probe_started: float = -math.inf
    """When the last probe started: the replica answered at or after it, if it passed."""
    passes: int = 0
    """Probes passed in a row."""
    readmit_after: int = READMIT_PROBES
    """Passes in a row that re-admit it once ejected (hysteresis)."""
    admitted_at: float = -math.inf
    ever_admitted: bool = False
    has_until: float = -math.inf
    """Every write committed on the primary before this time (trio clock) is applied
    here, as far as the last probe showed (its start, less the lag it reported)."""
    wake: trio.Event = field(default_factory=trio.Event)
    """Set when a call starts with none in flight: the probe child recomputes its wait."""

    def call_started(self, scope: trio.CancelScope) -> None:
        """A read (or its rollback) starts waiting here: ``scope`` is cancelled on ejection."""
        self.inflight[scope] = trio.current_time()
        if len(self.inflight) == 1:
            self.wake.set()

    def call_ended(self, scope: trio.CancelScope) -> None:
        self.inflight.pop(scope, None)

    def unanswered_since(self) -> float | None:
        """Since when the oldest call in flight has waited without the replica answering
        a probe (``None`` with no call in flight)."""
        for started in self.inflight.values():  # insertion order: the oldest first
            return max(started, self.probe_started)
        return None


class ReplicaRouter:
    """Where sessions go: an admitted replica (round robin) for reads, else the primary
    in ``slot`` (waited on for ``wait`` seconds during a restart)."""

    def __init__(
        self,
        settings: DBSettings,
        replicas: list[Replica],
        slot: Slot[DBServer],
        *,
        wait: float,
        metrics: Metrics | None,
    ) -> None:
        self.settings = settings
        self.replicas = replicas
        self.slot = slot
        self.metrics = metrics
        self.admitted: list[Replica] = []
        self._wait = wait
        self._round_robin = itertools.count()
        self._reads_on_primary = False
        self._written: contextvars.ContextVar[float] = contextvars.ContextVar(
            f"gochat_db_written_{id(self):x}", default=-math.inf
        )  # when this context last wrote (trio clock), for read-your-writes

    def last_write(self) -> float:
        """When this context last wrote (trio clock; ``-inf``: never)."""
        return self._written.get()

    def current_server(self, replica: Replica | None) -> DBServer | None:
        """The server ``replica`` (None: the primary) is served by now, if running."""
        return replica.server if replica is not None else self.slot.value

    def set_admitted(
        self, replica: Replica, healthy: bool, reason: str, *, quiet: bool = False
    ) -> None:
        replica.reason = reason
        if healthy != replica.admitted:
            replica.admitted = healthy
            url = str(replica.url)
            now = trio.current_time()
            if healthy:
                self.admitted.append(replica)
                if replica.ever_admitted:  # a re-admission: watched for flapping
                    replica.admitted_at = now
                replica.ever_admitted = True
                _log.info("db.replica_admitted", replica=replica.name, url=url, reason=reason)
            else:
                self.admitted.remove(replica)
                replica.has_until = -math.inf  # re-admitted: its next probes tell anew
                replica.passes = 0
                # Ejected again soon after a re-admission: it flaps, make it prove more.
                # (Its own probe child stopping says nothing of the server: the next
                # incarnation's first passing probe admits it, as at start.)
                stayed = now - replica.admitted_at
                if quiet:
                    replica.ever_admitted, replica.readmit_after = False, READMIT_PROBES
                elif stayed < replica.readmit_after * self.settings.probe_interval:
                    replica.readmit_after = min(replica.readmit_after * 2, READMIT_MAX)
                else:
                    replica.readmit_after = READMIT_PROBES
                for scope in list(replica.inflight):
                    scope.cancel()  # reads in flight there fail over (see DBSession)
                log = _log.info if quiet else _log.warning
                log("db.replica_ejected", replica=replica.name, url=url, reason=reason)
            if self.metrics is not None:
                gauge = self.metrics.db_replica_healthy.labels(replica=replica.name)
                gauge.set(1 if healthy else 0)
        if not quiet:
            self.note_read_target()

    def eject(self, replica: Replica, reason: str) -> None:
        self.set_admitted(replica, False, reason)

    def note_read_target(self) -> None:
        """Log once when reads fall back to the primary, once when replicas are back."""
        if not self.replicas:
            return
        if self.admitted:
            if self._reads_on_primary:
                self._reads_on_primary = False
                _log.info("db.reads_on_replicas", admitted=[r.name for r in self.admitted])
        elif not self._reads_on_primary and all(r.probed for r in self.replicas):
            self._reads_on_primary = True
            reasons = {r.name: r.reason for r in self.replicas}
            _log.warning("db.reads_on_primary", reason="no healthy replica", replicas=reasons)

    async def primary(self) -> DBServer:
        return await self.slot.get(self._wait)

    async def route_primary(self) -> tuple[DBServer, Replica | None]:
        return await self.primary(), None

    def mark_sticky(self) -> None:
        """This context wrote (or may have): note when, for read-your-writes."""
        if self.replicas and self.settings.sticky_seconds > 0:
            self._written.set(trio.current_time())

    async def route_read(
        self, *, consistent: bool = False, exclude: set[str] | frozenset[str] = frozenset()
    ) -> tuple[DBServer, Replica | None]:
        if not consistent and self.admitted:
            wrote = self._written.get()
            if wrote == -math.inf:  # this context never wrote: any admitted replica
                candidates = [r for r in self.admitted if r.name not in exclude]
            elif trio.current_time() < wrote + self.settings.sticky_seconds:
                candidates = []
            else:  # read-your-writes: only a replica a probe has shown to have the write
                candidates = [
                    r for r in self.admitted if r.has_until > wrote and r.name not in exclude
                ]
            if candidates:
                replica = candidates[next(self._round_robin) % len(candidates)]
                if replica.server is not None:
                    return replica.server, replica
        return await self.primary(), None
