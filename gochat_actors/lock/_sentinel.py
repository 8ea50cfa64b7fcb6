"""The locks on Redis Sentinel (``redis+sentinel://``): :class:`RedisLockBackend` over
the master the sentinels name, and, while that master has replicas, every acquire and
renewal waits (``WAIT 1 <ms>``) until a replica holds the lock and its fence counter.

Why: Redis replicates asynchronously, so a master that dies just after an acquire can
take the lock and the counter's last increment with it; the promoted replica would hand
out the same token again. Once a replica acknowledged the write, the sentinels promote
a server that has it (with one replica: that one). A shortfall (no replica confirmed in
time) undoes the acquire and raises :class:`~gochat_actors.LockUnavailable`. With no
replica there is nothing to wait for: a plain acquire; but a master whose replicas left
gets plain acquires only once the sentinels agree it is the master and have had their
``down-after-milliseconds`` to notice it cut off (see :meth:`_may_go_on_alone`).
Imports coredis: imported only when such a URL is used.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TypeVar

import coredis
import trio
from coredis.exceptions import ReplicationError

from .._dsn import Dsn
from .._exceptions import LockError, LockUnavailable
from .._redis_sentinel import SentinelReadiness, SentinelWatch, open_sentinel_backend
from ._errors import DRIVER_ERRORS, lock_error
from ._protocol import AcquireResult, LockBackend
from ._redis import RedisLockBackend

__all__ = ["SentinelLockBackend", "open_sentinel_locks"]

R = TypeVar("R")
_DEFAULT_DOWN_AFTER = 30.0  # Redis' default down-after-milliseconds, until the watch knows
_PING_PERIOD = 1.0  # a sentinel pings each server once a second
_Call = Callable[[str, str, float], Awaitable[R]]


class SentinelLockBackend(SentinelReadiness, RedisLockBackend):
    """:class:`RedisLockBackend` on the sentinels' master; acquires and renewals wait
    up to ``replica_timeout`` seconds for one replica while the master has any.

    The replica count comes from the master's ``ROLE``: at each :meth:`ping` (the
    actor's probe), and again after a shortfall or a failed call (a failover).

    Example::

        async with open_sentinel_locks("redis+sentinel://127.0.0.1:26379/gmaster/0") as b:
            result = await b.acquire("room:42", owner, 10.0)   # replicated when it returns
    """

    def __init__(
        self,
        client: coredis.Redis[bytes],
        watch: SentinelWatch,
        *,
        key_prefix: str = "",
        replica_timeout: float = 0.5,
    ) -> None:
        super().__init__(client, key_prefix=key_prefix)
        self._watch = watch
        self._wait_ms = max(1, round(replica_timeout * 1000))  # WAIT 0 would never return
        self._replicas: int | None = None  # unknown: counted before the next call
        self._had_replicas = False  # the last count found some
        self._replicas_seen_on: object = None  # the pool's location then
        self._lost_at: float | None = None  # when we first saw them gone (trio clock)

    @property
    def replicas(self) -> int | None:
        """The master's replicas as last counted (None: to be counted)."""
        return self._replicas

    async def _count_replicas(self) -> int:
        try:
            role = await self._client.role()
        except DRIVER_ERRORS as exc:
            raise lock_error(exc, "ROLE") from exc
        count = len(role.slaves or ()) if role.role == "master" else 0
        here = getattr(self._client.connection_pool, "location", None)
        if not count and self._had_replicas:
            await self._may_go_on_alone(same_server=here == self._replicas_seen_on)
        self._had_replicas = count > 0
        self._replicas_seen_on = here if count else None
        self._lost_at = None
        self._replicas = count
        return count

    async def _may_go_on_alone(self, *, same_server: bool) -> None:
        """Raise :class:`LockUnavailable` unless a master whose replicas left may take
        acquires without ``WAIT``. The replica left: it died, or this master is cut off
        and the replica is (about to be) promoted, its writes then lost. The sentinels
        must agree this server is the master, no failover running; and, on the server
        the replicas left, not before they have had ``down-after-milliseconds`` (and
        their ping's second) since we saw it: until then, they cannot tell the two
        apart and still name this master up."""
        now = trio.current_time()
        if self._lost_at is None:
            self._lost_at = now
        why = await self._watch.confirm()
        if why is None and same_server:
            down_after = self._watch.down_after
            grace = (_DEFAULT_DOWN_AFTER if down_after is None else down_after) + _PING_PERIOD
            if now - self._lost_at < grace:
                why = (
                    f"the sentinels cannot tell a dead replica from a cut-off master "
                    f"for {grace:g}s (down-after-milliseconds, and their ping)"
                )
        if why is not None:
            raise LockUnavailable(f"the master lost its replicas: {why}")

    async def ping(self) -> None:
        await super().ping()
        await self._count_replicas()

    async def acquire(self, name: str, owner: str, ttl: float) -> AcquireResult:
        try:
            result = await self._replicated(super().acquire, name, owner, ttl)
        except ReplicationError as shortfall:
            await self._undo(name, owner)
            raise LockUnavailable(
                f"lock acquire {name!r}: no replica confirmed it within {self._wait_ms} ms (undone)"
            ) from shortfall
        return result

    async def renew(self, name: str, owner: str, ttl: float) -> bool:
        try:
            return await self._replicated(super().renew, name, owner, ttl)
        except ReplicationError as shortfall:
            # coredis drops the script's reply on a shortfall; "not ours" must still win
            # (the holder stops now, not at its deadline): ask the master again, no WAIT.
            if not await self._still_ours(name, owner, ttl):
                return False
            # Transient: the renewer retries until the lease's deadline.
            raise LockUnavailable(
                f"lock renew {name!r}: no replica confirmed it within {self._wait_ms} ms"
            ) from shortfall

    async def _still_ours(self, name: str, owner: str, ttl: float) -> bool:
        """Whether the master still holds ``name`` for ``owner`` (a renewal without
        ``WAIT``: it only re-extends, on the master, what the failed renewal extended);
        True when it cannot tell within the ``WAIT``'s bound (the caller then raises)."""
        with trio.move_on_after(self._wait_ms / 1000):
            with suppress(LockError):
                return await super().renew(name, owner, ttl)
        return True

    async def _replicated(self, call: _Call[R], name: str, owner: str, ttl: float) -> R:
        """``call(name, owner, ttl)``, followed by ``WAIT 1`` on the same connection while
        the master has replicas; ``ReplicationError`` on a shortfall."""
        replicas = self._replicas
        if replicas is None:
            replicas = await self._count_replicas()
        try:
            if not replicas:
                return await call(name, owner, ttl)
            with self._client.ensure_replication(1, self._wait_ms):
                return await call(name, owner, ttl)
        except LockError as exc:
            self._replicas = None  # a replica lost, or a failover: count again next time
            if self._had_replicas and self._lost_at is None:
                self._lost_at = trio.current_time()  # the grace starts at the first sign
            if isinstance(exc.__cause__, ReplicationError):
                raise exc.__cause__ from None
            raise

    async def _undo(self, name: str, owner: str) -> None:
        """Release what an unconfirmed acquire took (bounded; best effort: the lock's
        TTL ends it otherwise, and the actor releases unanswered acquires too)."""
        with trio.move_on_after(self._wait_ms / 1000):
            with suppress(LockError):
                await self.release(name, owner)


@asynccontextmanager
async def open_sentinel_locks(
    url: Dsn | str,
    *,
    key_prefix: str = "",
    op_timeout: float = 1.0,
    replica_timeout: float | None = None,
) -> AsyncIterator[LockBackend]:
    """Open the Sentinel :class:`LockBackend` for the ``async with`` block;
    ``replica_timeout`` (the ``WAIT``'s bound) defaults to half of ``op_timeout``, so a
    shortfall is answered, and undone, within one operation's timeout.

    Example::

        async with open_sentinel_locks(url, key_prefix="chat:") as backend:
            result = await backend.acquire("room:42", owner, 10.0)
    """
    wait = op_timeout / 2 if replica_timeout is None else replica_timeout
    make = functools.partial(SentinelLockBackend, key_prefix=key_prefix, replica_timeout=wait)
    async with open_sentinel_backend(url, make, op_timeout=op_timeout) as backend:
        yield backend
