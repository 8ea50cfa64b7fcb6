"""``IdGenerator``: the facade. Issues Snowflake IDs; its child keeps the machine ID."""

from __future__ import annotations

import math
import os
import random
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import trio

from supervisors import ChildSpec

from .._exceptions import ClockBehind, IdGenError, MachineIdLost
from ..metrics import Metrics
from ._clock import IdClock, SystemClock
from ._keeper import run_keeper
from ._layout import SnowflakeLayout, SnowflakeParts
from ._protocol import EtcdBackend
from ._settings import IdGenSettings

__all__ = ["IdGenStatistics", "IdGenerator"]

_NEVER = 1 << 63  # a monotonic deadline that never comes (static machine ID)
_FLUSH_EVERY_MS = 250  # how often the issued-IDs counter reaches Prometheus
_MAX_SPINS = 10_000_000  # clock reads waiting for the next ms before calling it frozen
_BATCH_MS = 16  # a next_ids batch is at most this many milliseconds' worth of sequence ...
_MAX_BATCH = 65_536  # ... and at most this many IDs


def _default_request_timeout(settings: IdGenSettings) -> float:
    """One etcd request's bound: a third of the TTL (at most 5 s). With several members,
    also at most half the slack between a renewal and the deadline it must beat
    (``2/3 lease_ttl - margin``): a renewal whose member hangs then moves to another
    member and still lands in time."""
    timeout = max(0.1, min(5.0, settings.lease_ttl / 3))
    if len(settings.etcd_members) > 1:
        slack = settings.lease_ttl * 2 / 3 - settings.margin
        timeout = max(0.1, min(timeout, slack / 2))
    return timeout


@dataclass(frozen=True, slots=True)
class IdGenStatistics:
    """What :meth:`IdGenerator.statistics` returns.

    ``valid_for`` is how many seconds IDs may still be issued without another lease
    renewal (``math.inf`` for a static machine ID, ``0.0`` while none is held);
    ``valid_until`` is that deadline on the generator's monotonic clock, in seconds
    (:func:`time.monotonic` with the default clock).
    """

    machine_id: int | None
    issued: int
    next_ms_waits: int
    renewals: int
    renewal_failures: int
    acquisitions: int
    valid_for: float
    valid_until: float


class IdGenerator:
    """Snowflake IDs: ``timestamp | machine ID | sequence`` (see :class:`SnowflakeLayout`).

    With ``[idgen] etcd`` empty the machine ID is the static ``machine_id`` and IDs can be
    issued at once (one instance per machine ID: nothing stops two processes from using
    the same one). With an etcd URL (or ``memory://``, or ``backend=``) the child from
    :meth:`spec` leases a free machine ID and keeps it; IDs are issued only while the
    lease is surely held, else :class:`~gochat_actors.MachineIdLost`. ``request_timeout``
    bounds one etcd request to one member (default: ``lease_ttl / 3``, at most 5 s; for
    a cluster also at most ``(2/3 lease_ttl - margin) / 2``).

    Time is the wall clock read once, here, plus monotonic time since: a wall-clock step
    inside the process changes nothing, and IDs from one generator strictly increase.
    :meth:`next_id` and :meth:`next_ids` are synchronous; call them from one thread
    (the trio thread).

    Example::

        ids = IdGenerator(settings.idgen, metrics=metrics)
        async with open_supervisor([ids.spec()]):
            await ids.wait_ready()
            message_id = ids.next_id()
            ids.parse(message_id).machine_id == ids.machine_id
    """

    __slots__ = (
        "_acquisitions",
        "_backend",
        "_base",
        "_changed",
        "_check_ms",
        "_clock",
        "_done",
        "_epoch",
        "_lost_reason",
        "_machine_id",
        "_machine_part",
        "_max_ms",
        "_max_seq",
        "_metrics",
        "_mono",
        "_ms",
        "_next_ms_waits",
        "_offset_ns",
        "_renewal_failures",
        "_renewals",
        "_reported",
        "_request_timeout",
        "_rng",
        "_running",
        "_seq",
        "_shift",
        "_valid_until_ns",
        "layout",
        "owner",
        "settings",
    )

    def __init__(
        self,
        settings: IdGenSettings,
        *,
        metrics: Metrics | None = None,
        clock: IdClock | None = None,
        backend: EtcdBackend | None = None,
        request_timeout: float | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(settings, IdGenSettings):
            raise TypeError(f"settings must be an IdGenSettings, got {type(settings).__name__}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.settings = settings
        # The keeper's draws (the first machine ID tried, retry jitter): one stream for
        # the generator's whole life, replayable from `seed` (open_service passes its
        # supervisor's), from the OS otherwise.
        self._rng = random.Random(None if seed is None else f"gochat-idgen:{seed}")
        self.layout = SnowflakeLayout(
            epoch_ms=settings.epoch_ms,
            timestamp_bits=settings.timestamp_bits,
            machine_bits=settings.machine_bits,
            sequence_bits=settings.sequence_bits,
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        """This generator's name in etcd (host, pid, random: unique per instance)."""
        self._metrics = metrics
        self._backend = backend
        if request_timeout is not None and not (0 < request_timeout < math.inf):
            raise ValueError(f"request_timeout must be > 0 and finite, got {request_timeout!r}")
        self._request_timeout = request_timeout or _default_request_timeout(settings)
        self._clock: IdClock = clock if clock is not None else SystemClock()
        self._mono = self._clock.monotonic_ns
        mono = self._mono()
        wall = self._clock.wall_ns()
        # Unix ns = monotonic ns + offset: the wall clock is read this once.
        self._offset_ns = wall - mono
        if wall // 1_000_000 < settings.epoch_ms:
            raise ClockBehind(
                f"the wall clock ({wall // 1_000_000} ms) is before epoch_ms "
                f"({settings.epoch_ms}): IDs would be negative"
            )
        self._epoch = self.layout.epoch_ms
        self._shift = self.layout.timestamp_shift
        self._max_seq = self.layout.max_sequence
        self._max_ms = self.layout.max_timestamp_ms
        # The hot state: the millisecond in use, its last sequence, its ID prefix.
        self._ms = -1
        self._seq = -1
        self._base = 0
        self._done = 0  # IDs issued in milliseconds before self._ms
        self._reported = 0  # of those, how many reached Prometheus
        self._check_ms = 0  # a rollover at or past this ms runs _checkpoint
        self._machine_id: int | None = None
        self._machine_part = 0
        self._valid_until_ns = 0
        self._lost_reason = "no machine ID held yet (is the idgen child running?)"
        self._changed = trio.Event()
        self._next_ms_waits = 0
        self._renewals = 0
        self._renewal_failures = 0
        self._acquisitions = 0
        self._running = False
        if self.static:
            self._install(settings.machine_id, 0)
            self._extend(_NEVER)

    # -- the hot path ----------------------------------------------------------------
    def next_id(self) -> int:
        """A new ID, greater than every ID this generator issued before.

        Raises :class:`~gochat_actors.MachineIdLost` when the machine ID is not surely
        held (not yet acquired, or its lease not renewed in time): never a doubtful ID.

        Example::

            try:
                message_id = ids.next_id()
            except MachineIdLost:
                await ids.wait_ready()
                message_id = ids.next_id()
        """
        ns = self._mono()
        if ns >= self._valid_until_ns:
            raise self._not_issuing()
        ms = (ns + self._offset_ns) // 1_000_000
        if ms > self._ms:
            return self._roll(ms)
        seq = self._seq + 1
        if seq > self._max_seq:
            return self._roll(self._wait_next_ms())
        self._seq = seq
        return self._base | seq

    @property
    def max_batch(self) -> int:
        """The largest ``n`` of :meth:`next_ids`: 16 milliseconds' worth of sequence,
        at most 65,536 (65,536 with the default layout)."""
        return min(_MAX_BATCH, _BATCH_MS * (self._max_seq + 1))

    def next_ids(self, n: int) -> list[int]:
        """``n`` new IDs in increasing order (at most ``2**sequence_bits`` per millisecond:
        a large batch blocks for about ``n / 4096`` ms with the default layout). ``n`` is
        at most :attr:`max_batch` (``ValueError`` beyond): a synchronous call must not
        hold the trio thread for long; call again for more.

        Example::

            batch = ids.next_ids(1000)
            assert batch == sorted(batch)
        """
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n > self.max_batch:
            raise ValueError(
                f"n must be <= {self.max_batch} (max_batch), got {n}: a batch is at most "
                f"{_BATCH_MS} ms worth of IDs; call next_ids again for more"
            )
        out: list[int] = []
        per_ms = self._max_seq + 1
        while n > 0:
            ns = self._mono()
            if ns >= self._valid_until_ns:
                raise self._not_issuing()
            ms = (ns + self._offset_ns) // 1_000_000
            if ms > self._ms:
                self._roll(ms)
                start = 0
            else:
                start = self._seq + 1
                if start == per_ms:
                    self._roll(self._wait_next_ms())
                    start = 0
            take = min(n, per_ms - start)
            first = self._base + start
            out.extend(range(first, first + take))
            self._seq = start + take - 1
            n -= take
        return out

    def _roll(self, ms: int) -> int:
        """Move to millisecond ``ms`` (> the current one) and return its first ID."""
        if ms >= self._check_ms:
            self._checkpoint(ms)
        self._done += self._seq + 1
        self._ms = ms
        self._seq = 0
        self._base = ((ms - self._epoch) << self._shift) | self._machine_part
        return self._base

    def _wait_next_ms(self) -> int:
        """Spin until the clock passes the current millisecond (its sequence is used up)."""
        self._next_ms_waits += 1
        if self._metrics is not None:
            self._metrics.idgen_next_millisecond_waits.inc()
        first = self._mono()
        for _ in range(_MAX_SPINS):
            ns = self._mono()
            if ns >= self._valid_until_ns:
                raise self._not_issuing()
            ms = (ns + self._offset_ns) // 1_000_000
            if ms > self._ms:
                return ms
            if self._ms - ms > 1:
                raise ClockBehind(
                    f"the clock ({ms} ms) is behind the last issued timestamp ({self._ms} ms)"
                )
        raise ClockBehind(
            f"the clock did not reach the next millisecond in {_MAX_SPINS} reads "
            f"({(self._mono() - first) / 1e6:g} ms passed): is it frozen (a test clock "
            "outside trio's run loop, or more IDs in one virtual ms than it holds)?"
        )

    def _checkpoint(self, ms: int) -> None:
        """Every ``_FLUSH_EVERY_MS`` ms: report issued IDs; refuse a timestamp overflow."""
        if ms > self._max_ms:
            raise IdGenError(
                f"the {self.layout.timestamp_bits}-bit timestamp ran out at {self._max_ms} "
                "(Unix ms): choose a later epoch_ms"
            )
        self._flush_issued()
        self._check_ms = min(ms + _FLUSH_EVERY_MS, self._max_ms + 1)

    def _flush_issued(self) -> None:
        issued = self._done + self._seq + 1
        if self._metrics is not None and issued > self._reported:
            self._metrics.idgen_issued.inc(issued - self._reported)
        self._reported = issued

    def _not_issuing(self) -> IdGenError:
        return MachineIdLost(self._lost_reason)

    # -- what the keeper drives ------------------------------------------------------
    def _now_ms(self) -> int:
        """Unix milliseconds on this generator's clock."""
        return (self._mono() + self._offset_ns) // 1_000_000

    def _install(self, machine_id: int, floor_ms: int) -> None:
        """Issue under ``machine_id`` from millisecond ``floor_ms`` on (not before, and
        never at or before a millisecond already used)."""
        self._done += self._seq + 1 - (self._max_seq + 1)
        self._seq = self._max_seq  # the next ID starts a new millisecond
        self._ms = max(self._ms, floor_ms - 1)
        self._machine_id = machine_id
        self._machine_part = machine_id << self.layout.machine_shift
        self._check_ms = 0

    def _extend(self, valid_until_ns: int) -> None:
        """Allow issuing until the monotonic deadline ``valid_until_ns``."""
        self._valid_until_ns = valid_until_ns
        self._lost_reason = (
            f"the lease on machine ID {self._machine_id} was not renewed in time "
            "(lease_ttl - margin passed): not issuing until it is"
        )
        if self._metrics is not None:
            self._metrics.idgen_machine_id.set(-1 if self._machine_id is None else self._machine_id)
        self._changed.set()
        self._changed = trio.Event()

    def _invalidate(self, reason: str) -> None:
        """Stop issuing at once."""
        self._valid_until_ns = 0
        self._lost_reason = reason
        if self._metrics is not None:
            self._metrics.idgen_machine_id.set(-1)
        self._flush_issued()

    # -- the rest of the public API ----------------------------------------------------
    @property
    def static(self) -> bool:
        """True for the embedded default: a static machine ID, no etcd."""
        return not self.settings.etcd and self._backend is None

    @property
    def machine_id(self) -> int | None:
        """The machine ID IDs are issued under now, or ``None`` while none is surely held."""
        return self._machine_id if self._mono() < self._valid_until_ns else None

    @property
    def ready(self) -> bool:
        """True while :meth:`next_id` would issue (the machine ID is surely held)."""
        return self._mono() < self._valid_until_ns

    async def wait_ready(self, timeout: float = math.inf) -> None:
        """Wait until IDs can be issued; :class:`~gochat_actors.MachineIdLost` after
        ``timeout`` seconds.

        Example::

            await ids.wait_ready(timeout=10.0)
        """
        await trio.lowlevel.checkpoint()
        with trio.move_on_after(timeout):
            while not self.ready:
                await self._changed.wait()
            return
        raise MachineIdLost(f"{self._lost_reason} (waited {timeout:g}s)")

    def parse(self, i: int) -> SnowflakeParts:
        """Take an ID apart: ``SnowflakeParts(timestamp_ms, machine_id, sequence)``, the
        timestamp in Unix milliseconds.

        Example::

            ids.parse(ids.next_id()).machine_id == ids.machine_id
        """
        return self.layout.parse(i)

    def compose(self, timestamp_ms: int, machine_id: int, sequence: int) -> int:
        """The ID of these parts (``timestamp_ms`` in Unix ms), e.g. the smallest ID of a
        time for range queries.

        Example::

            since = ids.compose(int(time.time() * 1000) - 3_600_000, 0, 0)
        """
        return self.layout.compose(timestamp_ms, machine_id, sequence)

    def statistics(self) -> IdGenStatistics:
        """Counters and the current machine ID, as a frozen record.

        Example::

            stats = ids.statistics()
            print(stats.issued, stats.machine_id, stats.valid_for)
        """
        self._flush_issued()
        left = self._valid_until_ns - self._mono()
        static = self._valid_until_ns >= _NEVER
        return IdGenStatistics(
            machine_id=self.machine_id,
            issued=self._done + self._seq + 1,
            next_ms_waits=self._next_ms_waits,
            renewals=self._renewals,
            renewal_failures=self._renewal_failures,
            acquisitions=self._acquisitions,
            valid_for=math.inf if static else max(0.0, left / 1e9),
            valid_until=math.inf if static else self._valid_until_ns / 1e9,
        )

    @property
    def request_timeout(self) -> float:
        """The bound of one etcd request to one member, in seconds."""
        return self._request_timeout

    def spec(self, id: str = "idgen", **spec_options: Any) -> ChildSpec:
        """The child that holds the machine ID: it starts once IDs can be issued, keeps
        the lease alive, reacquires after a loss, and frees the ID when stopped.

        ``spec_options`` go to :class:`supervisors.ChildSpec` (``depends_on``, ``shutdown``).
        Its ``start_timeout`` defaults to ``None``: a new owner is ready only once the wall
        clock has passed the last timestamp its machine ID's previous owner used, which
        takes as long as their clocks differ.

        Example::

            children.append(ids.spec("idgen"))
        """
        spec_options.setdefault("start_timeout", None)
        return ChildSpec(id, self.run, **spec_options)

    async def run(
        self, *, task_status: trio.TaskStatus[IdGenerator] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Hold the machine ID until cancelled (what :meth:`spec` runs); ``task_status``
        gets this generator once IDs can be issued.

        Example::

            await nursery.start(ids.run)   # or run ids.spec() in a supervisor
        """
        await run_keeper(GeneratorLease(self), started=lambda: task_status.started(self))

    def __repr__(self) -> str:
        mode = "static" if self.static else "leased"
        return f"<IdGenerator {mode} machine_id={self.machine_id} owner={self.owner!r}>"


class GeneratorLease:
    """An :class:`IdGenerator` as its keeper drives it (a
    :class:`~gochat_actors.idgen._lease.LeaseHolder`): the issuing state stays in the
    generator's own fields, read on its hot path; this is the one door the keeper uses."""

    __slots__ = ("_gen",)

    def __init__(self, gen: IdGenerator) -> None:
        self._gen = gen

    @property
    def settings(self) -> IdGenSettings:
        return self._gen.settings

    @property
    def layout(self) -> SnowflakeLayout:
        return self._gen.layout

    @property
    def owner(self) -> str:
        return self._gen.owner

    @property
    def running(self) -> bool:
        return self._gen._running

    @running.setter
    def running(self, value: bool) -> None:
        self._gen._running = value

    @property
    def static(self) -> bool:
        return self._gen.static

    @property
    def ready(self) -> bool:
        return self._gen.ready

    @property
    def backend(self) -> EtcdBackend | None:
        return self._gen._backend

    @property
    def request_timeout(self) -> float:
        return self._gen._request_timeout

    @property
    def machine_id(self) -> int | None:
        return self._gen._machine_id

    @property
    def rng(self) -> random.Random:
        return self._gen._rng

    @property
    def valid_until_ns(self) -> int:
        return self._gen._valid_until_ns

    @property
    def last_ms(self) -> int:
        return self._gen._ms

    def mono(self) -> int:
        return self._gen._mono()

    def now_ms(self) -> int:
        return self._gen._now_ms()

    def install(self, machine_id: int, floor_ms: int) -> None:
        self._gen._install(machine_id, floor_ms)

    def extend(self, valid_until_ns: int) -> None:
        self._gen._extend(valid_until_ns)

    def invalidate(self, reason: str) -> None:
        self._gen._invalidate(reason)

    def flush_issued(self) -> None:
        self._gen._flush_issued()

    def count_renewal(self) -> None:
        gen = self._gen
        gen._renewals += 1
        if gen._metrics is not None:
            gen._metrics.idgen_renewals.inc()

    def count_renewal_failure(self) -> None:
        gen = self._gen
        gen._renewal_failures += 1
        if gen._metrics is not None:
            gen._metrics.idgen_renewal_failures.inc()

    def count_acquisition(self) -> None:
        self._gen._acquisitions += 1
