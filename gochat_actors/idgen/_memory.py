"""``MemoryEtcd``: an in-memory etcd stand-in on the trio clock (``memory://``)."""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

import outcome
import trio

from .._exceptions import IdGenUnavailable, MachineIdLost
from .._pause import PauseSwitch
from ._protocol import Compare, Delete, Get, KeyValue, Op, Put, TxnResult

__all__ = ["MemoryEtcd"]

T = TypeVar("T")


@dataclass(slots=True)
class _Lease:
    ttl: int
    expires_at: float
    keys: set[bytes] = field(default_factory=set)


_OPS = (
    "range",
    "put",
    "delete",
    "txn",
    "lease_grant",
    "lease_keepalive",
    "lease_revoke",
    "lease_time_to_live",
)


@dataclass(slots=True)
class _Held:
    """A request etcd received and has not applied yet (see :meth:`MemoryEtcd.hold_requests`)."""

    op: str
    apply: Callable[[], object]
    done: trio.Event = field(default_factory=trio.Event)
    result: outcome.Outcome[object] | None = None


class MemoryEtcd(PauseSwitch):
    """The :class:`EtcdBackend` operations, in memory, with leases expiring on the trio
    clock (so ``autojump_clock`` makes a 10 s TTL pass at once).

    It passes the same conformance suite as real etcd
    (:func:`gochat_actors.testing.check_idgen_backend`). Share one instance between
    generators to make them compete for machine IDs in one process. Every call is one
    simulated round trip: half of ``latency`` on the way there, the operation (atomic),
    half on the way back (a caller that gives up on the way back leaves it applied).
    Fault switches, for chaos tests:

    - :meth:`pause` / :meth:`resume`: every call hangs (like ``kill -STOP`` on etcd);
    - :meth:`fail`: calls raise :class:`~gochat_actors.IdGenUnavailable` until
      ``fail(False)``;
    - :meth:`hold_requests` / :meth:`stop_holding` / :meth:`apply_held`: requests reach
      etcd but are applied only later, after their callers may have given up (a late
      write).

    Example::

        etcd = MemoryEtcd()
        a = IdGenerator(settings, backend=etcd)
        b = IdGenerator(settings, backend=etcd)   # gets another machine ID
    """

    def __init__(self, *, min_ttl: int = 1, latency: float = 0.0) -> None:
        if not isinstance(latency, int | float) or not math.isfinite(latency) or latency < 0:
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {latency!r}")
        self.min_ttl = min_ttl
        self.latency = float(latency)
        self._kv: dict[bytes, KeyValue] = {}
        self._sorted: list[bytes] = []
        self._leases: dict[int, _Lease] = {}
        self._ids = itertools.count(0x6C65_6173_6500_0001)
        self._revision = 1
        self._failing = False
        self._holding: frozenset[str] | None = None
        self._held: list[_Held] = []
        self.calls = 0
        """How many operations were called (paused or failed ones included)."""

    # -- fault injection (pause/resume come from PauseSwitch) --------------------------
    def fail(self, failing: bool = True) -> None:
        """Make calls raise :class:`~gochat_actors.IdGenUnavailable` (or stop doing so)."""
        self._failing = failing

    def hold_requests(self, *ops: str) -> None:
        """From now on, hold the requests of ``ops`` (method names such as ``"txn"``;
        every operation when none is named): they reach etcd but are not applied, and
        their callers wait (or give up, as a client's timeout does). :meth:`apply_held`
        applies them later, as an etcd that received a request applies it after the
        client stopped waiting.

        Example::

            etcd.hold_requests("txn")   # the next renewal's record write hangs ...
            etcd.stop_holding()         # (once one is held: etcd.held == 1)
            await trio.sleep(5)         # ... its caller times out and goes on
            etcd.apply_held()           # ... then etcd applies it, late
        """
        unknown = set(ops) - set(_OPS)
        if unknown:
            raise ValueError(f"unknown etcd operations {sorted(unknown)}; known: {_OPS}")
        self._holding = frozenset(ops or _OPS)

    def stop_holding(self) -> None:
        """Let new requests through again; those already held stay held until
        :meth:`apply_held`."""
        self._holding = None

    def apply_held(self) -> int:
        """Apply every held request now, in the order they arrived (a caller still
        waiting gets its answer); returns how many were applied."""
        held, self._held = self._held, []
        for request in held:
            self._expire()
            request.result = outcome.capture(request.apply)
            request.done.set()
        return len(held)

    @property
    def held(self) -> int:
        """How many requests are held, not yet applied."""
        return len(self._held)

    @property
    def revision(self) -> int:
        """The current store revision."""
        return self._revision

    # -- plumbing ------------------------------------------------------------------
    async def _call(self, op: str, apply: Callable[[], T]) -> T:
        """One round trip: the way there, ``apply`` (atomic, or held), the way back."""
        self.calls += 1
        half = self.latency / 2
        if half:
            await trio.sleep(half)
        else:
            await trio.lowlevel.checkpoint()
        await self._while_paused()  # leases keep expiring meanwhile
        if self._failing:
            raise IdGenUnavailable("memory etcd: failing on purpose (MemoryEtcd.fail)")
        if self._holding is not None and op in self._holding:
            request = _Held(op, apply)
            self._held.append(request)
            await request.done.wait()  # a caller giving up leaves the request held
            assert request.result is not None
            result = cast("T", request.result.unwrap())
        else:
            self._expire()
            result = apply()
        if half:
            await trio.sleep(half)
        return result

    def _expire(self) -> None:
        now = trio.current_time()
        expired = [lid for lid, lease in self._leases.items() if lease.expires_at <= now]
        if expired:
            self._revision += 1
            for lid in expired:
                for key in self._leases.pop(lid).keys:
                    self._remove(key)

    def _remove(self, key: bytes) -> bool:
        kv = self._kv.pop(key, None)
        if kv is None:
            return False
        del self._sorted[bisect.bisect_left(self._sorted, key)]
        if kv.lease in self._leases:
            self._leases[kv.lease].keys.discard(key)
        return True

    def _keys(self, key: bytes, range_end: bytes) -> list[bytes]:
        if not range_end:
            return [key] if key in self._kv else []
        lo = bisect.bisect_left(self._sorted, key)
        if range_end == b"\0":
            return self._sorted[lo:]
        return self._sorted[lo : bisect.bisect_left(self._sorted, range_end)]

    def _get(self, key: bytes, range_end: bytes, keys_only: bool) -> list[KeyValue]:
        kvs = [self._kv[k] for k in self._keys(key, range_end)]
        if keys_only:
            return [
                KeyValue(kv.key, b"", kv.create_revision, kv.mod_revision, kv.version, kv.lease)
                for kv in kvs
            ]
        return kvs

    def _check_lease(self, lease: int) -> None:
        if lease and lease not in self._leases:
            raise MachineIdLost(f"memory etcd: lease {lease} not found")

    def _put(self, key: bytes, value: bytes, lease: int, revision: int) -> None:
        old = self._kv.get(key)
        if old is None:
            bisect.insort(self._sorted, key)
            created, version = revision, 1
        else:
            created, version = old.create_revision, old.version + 1
            if old.lease in self._leases:
                self._leases[old.lease].keys.discard(key)
        self._kv[key] = KeyValue(key, value, created, revision, version, lease)
        if lease:
            self._leases[lease].keys.add(key)

    def _holds(self, cmp: Compare) -> bool:
        kv = self._kv.get(cmp.key)
        actual: int | bytes
        if cmp.target == "value":
            actual = b"" if kv is None else kv.value
            return kv is not None and actual == cmp.value
        if kv is None:
            actual = 0
        elif cmp.target == "create":
            actual = kv.create_revision
        elif cmp.target == "mod":
            actual = kv.mod_revision
        else:
            actual = kv.version
        return actual == cmp.value

    # -- EtcdBackend -----------------------------------------------------------------
    async def range(
        self, key: bytes, range_end: bytes = b"", *, keys_only: bool = False
    ) -> list[KeyValue]:
        """The keys in ``[key, range_end)`` (or just ``key``), sorted."""
        return await self._call("range", lambda: self._get(key, range_end, keys_only))

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Store ``value`` at ``key``; the new store revision."""

        def apply() -> int:
            self._check_lease(lease)
            self._revision += 1
            self._put(key, value, lease, self._revision)
            return self._revision

        return await self._call("put", apply)

    async def delete(self, key: bytes, range_end: bytes = b"") -> int:
        """Delete ``key`` (or ``[key, range_end)``); how many keys were deleted."""

        def apply() -> int:
            keys = self._keys(key, range_end)
            if keys:
                self._revision += 1
            return sum(self._remove(k) for k in keys)

        return await self._call("delete", apply)

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Run ``success`` if every comparison holds, else ``failure``, atomically."""
        compare, success, failure = list(compare), list(success), list(failure)
        return await self._call("txn", lambda: self._txn(compare, success, failure))

    def _txn(self, compare: list[Compare], success: list[Op], failure: list[Op]) -> TxnResult:
        succeeded = all(self._holds(c) for c in compare)
        ops = success if succeeded else failure
        for op in ops:
            if isinstance(op, Put):
                self._check_lease(op.lease)
        writes = any(isinstance(op, Put | Delete) for op in ops)
        revision = self._revision + 1 if writes else self._revision
        responses: list[list[KeyValue] | int | None] = []
        for op in ops:
            if isinstance(op, Put):
                self._put(op.key, op.value, op.lease, revision)
                responses.append(None)
            elif isinstance(op, Get):
                responses.append(self._get(op.key, op.range_end, False))
            else:
                responses.append(sum(self._remove(k) for k in self._keys(op.key, op.range_end)))
        self._revision = revision
        return TxnResult(succeeded, revision, tuple(responses))

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: ``(lease_id, ttl)``, the TTL at least ``min_ttl``."""

        def apply() -> tuple[int, int]:
            granted = max(int(ttl), self.min_ttl)
            lease = next(self._ids)
            self._leases[lease] = _Lease(granted, trio.current_time() + granted)
            return lease, granted

        return await self._call("lease_grant", apply)

    async def lease_keepalive(self, lease: int) -> int | None:
        """Refresh ``lease``; its TTL, or ``None`` when it is gone."""

        def apply() -> int | None:
            held = self._leases.get(lease)
            if held is None:
                return None
            held.expires_at = trio.current_time() + held.ttl
            return held.ttl

        return await self._call("lease_keepalive", apply)

    async def lease_revoke(self, lease: int) -> bool:
        """Revoke ``lease`` and delete its keys; ``False`` if it was not there."""

        def apply() -> bool:
            held = self._leases.pop(lease, None)
            if held is None:
                return False
            self._revision += 1
            for key in list(held.keys):
                self._remove(key)
            return True

        return await self._call("lease_revoke", apply)

    async def lease_time_to_live(self, lease: int) -> int | None:
        """Whole seconds ``lease`` has left, or ``None`` when it is gone."""

        def apply() -> int | None:
            held = self._leases.get(lease)
            if held is None:
                return None
            return max(0, math.floor(held.expires_at - trio.current_time()))

        return await self._call("lease_time_to_live", apply)

    async def aclose(self) -> None:
        """Nothing to close (the data stays for other users of this instance)."""
        await trio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"<MemoryEtcd keys={len(self._kv)} leases={len(self._leases)}>"
