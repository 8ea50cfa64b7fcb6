"""``ClusterEtcd``: one :class:`EtcdBackend` over every member of an etcd cluster.

A request goes to the member that answered last. If that member cannot be reached,
refuses (no leader, a timeout of its own) or does not answer within ``timeout``, the
same request goes to the next member at once; each member is tried at most once per
request. A member that failed is put aside for ``retry_after`` seconds (tried only when
every other one failed too), then is a candidate again. Only when no member answers is
the request an :class:`~gochat_actors.IdGenUnavailable` naming each member's failure.

Resending to another member is safe for the keeper's requests: a keepalive or a range
repeats harmlessly; a txn that reached the first member too is guarded by its compares
(the keeper recognises its own claim, see ``_keeper.py``); an extra lease from a
repeated grant holds no key and expires.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import trio

from .._exceptions import IdGenAuthFailed, IdGenUnavailable, MachineIdLost
from ..log import get_logger
from ._protocol import Compare, EtcdBackend, KeyValue, Op, TxnResult

__all__ = ["ClusterEtcd"]

T = TypeVar("T")

_log = get_logger("gochat_actors.idgen")


@dataclass(slots=True)
class _Member:
    name: str  # its URL, masked: for logs and errors
    backend: EtcdBackend
    failed_at: float | None = None  # trio time of its last failure (None: healthy)
    error: str = ""


class ClusterEtcd:
    """An :class:`EtcdBackend` over ``members`` (``(name, backend)`` pairs, one per etcd
    member, all of one cluster), moving a request to the next member when one fails.

    ``timeout`` bounds one attempt on one member; a request takes at most
    ``timeout * len(members)``. ``failovers`` counts the times the member in use changed.

    Example::

        etcd = ClusterEtcd(
            [(url, HttpEtcd(url, timeout=2.0)) for url in urls], timeout=2.0
        )
        lease, ttl = await etcd.lease_grant(10)   # on the first member that answers
    """

    def __init__(
        self,
        members: Sequence[tuple[str, EtcdBackend]],
        *,
        timeout: float,
        retry_after: float = 5.0,
    ) -> None:
        if not members:
            raise ValueError("ClusterEtcd needs at least one member")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        self._members = [_Member(name, backend) for name, backend in members]
        self.timeout = float(timeout)
        self.retry_after = float(retry_after)
        self._current = 0
        self.failovers = 0

    @property
    def members(self) -> tuple[str, ...]:
        """Every member's name (its masked URL), in the order given."""
        return tuple(m.name for m in self._members)

    @property
    def current(self) -> str:
        """The member the next request goes to first."""
        return self._members[self._current].name

    @property
    def request_bound(self) -> float:
        """The longest one request can take: one ``timeout`` per member."""
        return self.timeout * len(self._members)

    def _order(self) -> list[_Member]:
        """The current member, then the others in ring order; those that failed less
        than ``retry_after`` ago go last, the longest-failed first."""
        now = trio.current_time()
        count = len(self._members)
        ring = [self._members[(self._current + i) % count] for i in range(count)]
        fresh = [m for m in ring if m.failed_at is None or now - m.failed_at >= self.retry_after]
        resting = sorted((m for m in ring if m not in fresh), key=lambda m: m.failed_at or 0.0)
        return fresh + resting

    def _answered(self, member: _Member) -> None:
        index = self._members.index(member)
        if index != self._current:
            self.failovers += 1
            previous = self._members[self._current]
            _log.warning(
                "idgen.etcd_failover",
                member=member.name,
                previous=previous.name,
                previous_error=previous.error,
            )
            self._current = index
        member.failed_at = None
        member.error = ""

    async def _run(self, what: str, call: Callable[[EtcdBackend], Awaitable[T]]) -> T:
        failures: list[str] = []
        for member in self._order():
            error = ""
            with trio.move_on_after(self.timeout) as scope:
                try:
                    result = await call(member.backend)
                except IdGenAuthFailed:
                    raise  # every member would refuse the same credentials
                except MachineIdLost:
                    self._answered(member)  # it answered: the lease is gone
                    raise
                except IdGenUnavailable as exc:
                    error = str(exc)
            if scope.cancelled_caught:
                error = f"no reply within {self.timeout:g}s"
            if error:
                member.failed_at = trio.current_time()
                member.error = error
                failures.append(f"{member.name}: {error}")
                continue
            self._answered(member)
            return result
        raise IdGenUnavailable(
            f"etcd {what}: none of the {len(self._members)} members answered "
            f"(no quorum, or unreachable): {'; '.join(failures)}"
        )

    async def range(
        self, key: bytes, range_end: bytes = b"", *, keys_only: bool = False
    ) -> list[KeyValue]:
        """The keys in ``[key, range_end)`` (or just ``key``), sorted."""
        return await self._run("range", lambda b: b.range(key, range_end, keys_only=keys_only))

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Store ``value`` at ``key``; the new store revision."""
        return await self._run("put", lambda b: b.put(key, value, lease=lease))

    async def delete(self, key: bytes, range_end: bytes = b"") -> int:
        """Delete ``key`` (or ``[key, range_end)``); how many keys were deleted."""
        return await self._run("delete", lambda b: b.delete(key, range_end))

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Run ``success`` if every comparison holds, else ``failure``, atomically."""
        return await self._run("txn", lambda b: b.txn(compare, success, failure))

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: ``(lease_id, ttl)``."""
        return await self._run("lease grant", lambda b: b.lease_grant(ttl))

    async def lease_keepalive(self, lease: int) -> int | None:
        """Refresh ``lease``; its TTL, or ``None`` when etcd no longer has it."""
        return await self._run("lease keepalive", lambda b: b.lease_keepalive(lease))

    async def lease_revoke(self, lease: int) -> bool:
        """Revoke ``lease``; ``False`` if etcd did not have it."""
        return await self._run("lease revoke", lambda b: b.lease_revoke(lease))

    async def lease_time_to_live(self, lease: int) -> int | None:
        """Seconds ``lease`` has left, or ``None`` when etcd does not have it."""
        return await self._run("lease timetolive", lambda b: b.lease_time_to_live(lease))

    async def aclose(self) -> None:
        """Close every member's connections (idempotent)."""
        for member in self._members:
            await member.backend.aclose()

    def __repr__(self) -> str:
        return f"<ClusterEtcd {','.join(self.members)} current={self.current}>"
