"""``FakeMember``: one member of an etcd cluster, in memory: a view of a shared
:class:`MemoryEtcd` (the cluster's one store) with its own faults."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import trio

from gochat_actors import IdGenUnavailable
from gochat_actors.idgen import Compare, EtcdBackend, KeyValue, MemoryEtcd, Op, TxnResult
from gochat_actors.idgen._cluster import ClusterEtcd

Mode = Literal["ok", "down", "hang", "late"]


class FakeMember:
    """A member of the cluster whose store is ``store``.

    ``mode``: ``ok`` answers; ``down`` refuses at once (a killed member: connection
    refused); ``hang`` never answers and applies nothing (SIGSTOP); ``late`` applies the
    request, then answers only after ``late_by`` seconds (its caller may have moved on).

    Example::

        store = MemoryEtcd()
        a, b = FakeMember(store, "a"), FakeMember(store, "b")
        a.mode = "down"
    """

    def __init__(self, store: MemoryEtcd, name: str, *, late_by: float = 60.0) -> None:
        self.store = store
        self.name = name
        self.mode: Mode = "ok"
        self.late_by = late_by
        self.calls = 0
        self.applied = 0

    async def _call(self, send: Callable[[], Awaitable[Any]]) -> Any:
        self.calls += 1
        await trio.lowlevel.checkpoint()  # the request on its way
        if self.mode == "down":
            raise IdGenUnavailable(f"etcd at {self.name} failed, server unreachable")
        if self.mode == "hang":
            await trio.sleep_forever()
        result = await send()
        self.applied += 1
        if self.mode == "late":
            await trio.sleep(self.late_by)
        await trio.lowlevel.checkpoint()  # the reply on its way
        return result

    async def range(
        self, key: bytes, range_end: bytes = b"", *, keys_only: bool = False
    ) -> list[KeyValue]:
        result: list[KeyValue] = await self._call(
            lambda: self.store.range(key, range_end, keys_only=keys_only)
        )
        return result

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        result: int = await self._call(lambda: self.store.put(key, value, lease=lease))
        return result

    async def delete(self, key: bytes, range_end: bytes = b"") -> int:
        result: int = await self._call(lambda: self.store.delete(key, range_end))
        return result

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        result: TxnResult = await self._call(lambda: self.store.txn(compare, success, failure))
        return result

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        result: tuple[int, int] = await self._call(lambda: self.store.lease_grant(ttl))
        return result

    async def lease_keepalive(self, lease: int) -> int | None:
        result: int | None = await self._call(lambda: self.store.lease_keepalive(lease))
        return result

    async def lease_revoke(self, lease: int) -> bool:
        result: bool = await self._call(lambda: self.store.lease_revoke(lease))
        return result

    async def lease_time_to_live(self, lease: int) -> int | None:
        result: int | None = await self._call(lambda: self.store.lease_time_to_live(lease))
        return result

    async def aclose(self) -> None:
        pass


def fake_cluster(
    size: int = 3, *, timeout: float = 1.0, retry_after: float = 5.0, late_by: float = 60.0
) -> tuple[ClusterEtcd, list[FakeMember], MemoryEtcd]:
    """A :class:`ClusterEtcd` over ``size`` fake members of one in-memory store."""
    store = MemoryEtcd()
    members = [FakeMember(store, f"m{i}", late_by=late_by) for i in range(1, size + 1)]
    pairs: list[tuple[str, EtcdBackend]] = [(m.name, m) for m in members]
    return ClusterEtcd(pairs, timeout=timeout, retry_after=retry_after), members, store
