"""``LateEtcd``: any :class:`EtcdBackend` whose requests can be held and sent late, after
their caller gave up (a late write on the real etcd), or failed like a crashed client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from gochat_actors import IdGenUnavailable
from gochat_actors.idgen import Compare, EtcdBackend, KeyValue, Op, TxnResult


class LateEtcd:
    """Wraps ``inner``: :meth:`hold_requests` makes the next txn hang for its caller
    while it is kept; :meth:`apply_held` sends the kept ones to ``inner`` now.

    Example::

        etcd = LateEtcd(HttpEtcd(url))
        etcd.hold_requests()            # the next txn waits (its caller times out)
        await etcd.apply_held()         # ... and reaches etcd later
    """

    def __init__(self, inner: EtcdBackend) -> None:
        self.inner = inner
        self.holding = False
        self.failing = False
        self._held: list[Callable[[], Awaitable[Any]]] = []

    @property
    def held(self) -> int:
        return len(self._held)

    def hold_requests(self) -> None:
        self.holding = True

    def stop_holding(self) -> None:
        self.holding = False

    async def apply_held(self) -> int:
        held, self._held = self._held, []
        for send in held:
            await send()
        return len(held)

    async def _call(self, send: Callable[[], Awaitable[Any]], *, hold: bool = False) -> Any:
        if self.failing:
            raise IdGenUnavailable("LateEtcd: failing on purpose")
        if hold and self.holding:
            self._held.append(send)
            await trio.sleep_forever()
        return await send()

    async def range(
        self, key: bytes, range_end: bytes = b"", *, keys_only: bool = False
    ) -> list[KeyValue]:
        result: list[KeyValue] = await self._call(
            lambda: self.inner.range(key, range_end, keys_only=keys_only)
        )
        return result

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        result: int = await self._call(lambda: self.inner.put(key, value, lease=lease))
        return result

    async def delete(self, key: bytes, range_end: bytes = b"") -> int:
        result: int = await self._call(lambda: self.inner.delete(key, range_end))
        return result

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        result: TxnResult = await self._call(
            lambda: self.inner.txn(compare, success, failure), hold=True
        )
        return result

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        result: tuple[int, int] = await self._call(lambda: self.inner.lease_grant(ttl))
        return result

    async def lease_keepalive(self, lease: int) -> int | None:
        result: int | None = await self._call(lambda: self.inner.lease_keepalive(lease))
        return result

    async def lease_revoke(self, lease: int) -> bool:
        result: bool = await self._call(lambda: self.inner.lease_revoke(lease))
        return result

    async def lease_time_to_live(self, lease: int) -> int | None:
        result: int | None = await self._call(lambda: self.inner.lease_time_to_live(lease))
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()
