"""The conformance suite every :class:`~gochat_actors.idgen.EtcdBackend` passes (real
etcd and :class:`~gochat_actors.idgen.MemoryEtcd`).

Each check is ``async def check_x(backend) -> None`` raising ``AssertionError``. It works
under a fresh key prefix ``/gochat-conformance/<random>/`` and deletes its keys and
revokes its leases when done. Lease lifetimes are checked both ways: a lease not kept
alive expires with its keys, and is still there shortly before its TTL ends (a backend
that keeps leases for half the TTL would let two generators hold one machine ID: it
fails).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from .._exceptions import MachineIdLost
from ..idgen import Compare, Delete, EtcdBackend, Get, KeyValue, Put, prefix_end
from ._cache_conformance import LIFETIME_CHECKED_AT, eventually

__all__ = ["IDGEN_CHECKS", "check_idgen_backend"]


@asynccontextmanager
async def _space(backend: EtcdBackend) -> AsyncIterator[bytes]:
    """A fresh key prefix, emptied afterwards."""
    prefix = f"/gochat-conformance/{uuid.uuid4().hex[:12]}/".encode()
    try:
        yield prefix
    finally:
        await backend.delete(prefix, prefix_end(prefix))


def _keys(kvs: list[KeyValue] | int | None) -> list[bytes]:
    assert isinstance(kvs, list), f"expected key-values, got {kvs!r}"
    return [kv.key for kv in kvs]


async def _unknown_lease(backend: EtcdBackend) -> int:
    """A lease ID that etcd surely does not have (granted, then revoked)."""
    lease, _ = await backend.lease_grant(5)
    assert await backend.lease_revoke(lease) is True
    return lease


async def _lease_refused(call: Awaitable[object]) -> None:
    try:
        await call
    except MachineIdLost:
        return
    raise AssertionError("attaching a key to an unknown lease should raise MachineIdLost")


async def check_put_and_range(backend: EtcdBackend) -> None:
    """A put value reads back exactly; an absent key reads as no key-values."""
    async with _space(backend) as p:
        value = bytes(range(256))
        revision = await backend.put(p + b"a", value)
        assert revision > 0
        [kv] = await backend.range(p + b"a")
        assert (kv.key, kv.value, kv.lease) == (p + b"a", value, 0)
        assert kv.create_revision == kv.mod_revision == revision
        assert kv.version == 1
        assert await backend.range(p + b"absent") == []


async def check_range_prefix_and_keys_only(backend: EtcdBackend) -> None:
    """``[key, range_end)`` returns the keys sorted; ``keys_only`` leaves values empty."""
    async with _space(backend) as p:
        for key in (b"2", b"10", b"1", b"x/1"):
            await backend.put(p + key, b"v" + key)
        assert _keys(await backend.range(p, prefix_end(p))) == [
            p + k for k in (b"1", b"10", b"2", b"x/1")
        ]
        digits = await backend.range(p + b"0", p + b":", keys_only=True)
        assert _keys(digits) == [p + b"1", p + b"10", p + b"2"]
        assert all(kv.value == b"" for kv in digits)


async def check_revisions(backend: EtcdBackend) -> None:
    """A second put keeps the create revision, raises the mod revision and the version."""
    async with _space(backend) as p:
        first = await backend.put(p + b"k", b"1")
        second = await backend.put(p + b"k", b"2")
        assert second > first
        [kv] = await backend.range(p + b"k")
        assert (kv.create_revision, kv.mod_revision, kv.version) == (first, second, 2)


async def check_delete(backend: EtcdBackend) -> None:
    """Delete one key or a range; the count is of keys that existed."""
    async with _space(backend) as p:
        for key in (b"a", b"b", b"c"):
            await backend.put(p + key, b"v")
        assert await backend.delete(p + b"a") == 1
        assert await backend.delete(p + b"a") == 0
        assert await backend.delete(p, prefix_end(p)) == 2
        assert await backend.range(p, prefix_end(p)) == []


async def check_txn_create_revision(backend: EtcdBackend) -> None:
    """``create == 0`` lets exactly one claimant put; the loser's failure branch runs."""
    async with _space(backend) as p:
        await backend.put(p + b"last", b"previous")
        claim = [Compare(p + b"id", "create", 0)]
        won = await backend.txn(claim, [Put(p + b"id", b"A"), Get(p + b"last")])
        assert won.succeeded is True
        assert won.responses[0] is None
        assert isinstance(won.responses[1], list)
        assert [kv.value for kv in won.responses[1]] == [b"previous"]
        [kv] = await backend.range(p + b"id")
        assert kv.create_revision == won.revision
        lost = await backend.txn(claim, [Put(p + b"id", b"B")], [Get(p + b"id")])
        assert lost.succeeded is False
        assert isinstance(lost.responses[0], list)
        assert [kv.value for kv in lost.responses[0]] == [b"A"]
        mine = [Compare(p + b"id", "create", won.revision)]
        again = await backend.txn(mine, [Put(p + b"id", b"A2"), Delete(p + b"last")])
        assert again.succeeded is True
        assert again.responses == (None, 1)
        assert [kv.value for kv in await backend.range(p + b"id")] == [b"A2"]


async def check_txn_compare_targets(backend: EtcdBackend) -> None:
    """``value``, ``mod`` and ``version`` comparisons hold exactly when equal."""
    async with _space(backend) as p:
        revision = await backend.put(p + b"k", b"v")
        for cmp, expected in [
            (Compare(p + b"k", "value", b"v"), True),
            (Compare(p + b"k", "value", b"w"), False),
            (Compare(p + b"k", "mod", revision), True),
            (Compare(p + b"k", "mod", revision + 1), False),
            (Compare(p + b"k", "version", 1), True),
            (Compare(p + b"absent", "version", 0), True),
            (Compare(p + b"absent", "mod", 0), True),  # the record guard relies on it
            (Compare(p + b"absent", "mod", revision), False),
        ]:
            result = await backend.txn([cmp], [])
            assert result.succeeded is expected, cmp


async def check_lease_grant_and_keepalive(backend: EtcdBackend) -> None:
    """A lease is granted at least the TTL asked; keepalive and time-to-live report it."""
    lease, ttl = await backend.lease_grant(10)
    try:
        assert lease > 0
        assert ttl >= 10
        assert await backend.lease_keepalive(lease) == ttl
        left = await backend.lease_time_to_live(lease)
        assert left is not None
        assert 0 <= left <= ttl
    finally:
        await backend.lease_revoke(lease)


async def check_unknown_lease(backend: EtcdBackend) -> None:
    """An unknown lease: keepalive and time-to-live say ``None``, revoke ``False``, and
    attaching a key to it raises :class:`~gochat_actors.MachineIdLost`."""
    lease = await _unknown_lease(backend)
    assert await backend.lease_keepalive(lease) is None
    assert await backend.lease_time_to_live(lease) is None
    assert await backend.lease_revoke(lease) is False
    async with _space(backend) as p:
        await _lease_refused(backend.put(p + b"k", b"v", lease=lease))
        await _lease_refused(backend.txn([], [Put(p + b"k", b"v", lease)]))
        assert await backend.range(p + b"k") == []


async def check_revoke_deletes_keys(backend: EtcdBackend) -> None:
    """Revoking a lease deletes its keys at once, and only its keys."""
    async with _space(backend) as p:
        lease, _ = await backend.lease_grant(30)
        await backend.put(p + b"leased", b"v", lease=lease)
        await backend.put(p + b"kept", b"v")
        [kv] = await backend.range(p + b"leased")
        assert kv.lease == lease
        assert await backend.lease_revoke(lease) is True
        assert _keys(await backend.range(p, prefix_end(p))) == [p + b"kept"]


async def check_expiry_deletes_keys(backend: EtcdBackend) -> None:
    """A lease not kept alive expires (within its TTL and a few seconds) with its keys."""
    async with _space(backend) as p:
        lease, ttl = await backend.lease_grant(1)
        await backend.put(p + b"leased", b"v", lease=lease)

        async def gone() -> bool:
            return await backend.range(p + b"leased") == []

        await eventually(gone, timeout=ttl + 3.0)
        assert await backend.lease_keepalive(lease) is None


LEASE_TTL = 2
"""The TTL (seconds) of the lease lifetime check: etcd's smallest."""


async def check_lease_lives_its_ttl(backend: EtcdBackend) -> None:
    """A lease (and its key) is still there at 80% of the TTL asked, counted from when
    the grant (or the keepalive) was sent: the generator issues until about then."""
    limit = LEASE_TTL * LIFETIME_CHECKED_AT
    async with _space(backend) as p:
        sent = trio.current_time()
        lease, _ = await backend.lease_grant(LEASE_TTL)
        try:
            await backend.put(p + b"k", b"v", lease=lease)
            for what in ("granted", "kept alive"):
                await trio.sleep_until(sent + limit)
                assert _keys(await backend.range(p + b"k")) == [p + b"k"], (
                    f"a lease {what} with ttl={LEASE_TTL}s lost its key after {limit:g}s"
                )
                sent = trio.current_time()
                assert await backend.lease_keepalive(lease) is not None, (
                    f"a lease {what} with ttl={LEASE_TTL}s was gone after {limit:g}s"
                )
        finally:
            await backend.lease_revoke(lease)


IDGEN_CHECKS: list[Callable[[EtcdBackend], Awaitable[None]]] = [
    check_put_and_range,
    check_range_prefix_and_keys_only,
    check_revisions,
    check_delete,
    check_txn_create_revision,
    check_txn_compare_targets,
    check_lease_grant_and_keepalive,
    check_unknown_lease,
    check_revoke_deletes_keys,
    check_expiry_deletes_keys,
    check_lease_lives_its_ttl,
]
"""Every etcd-backend check, in order (parametrize tests over it)."""


async def check_idgen_backend(make_backend: Callable[[], EtcdBackend]) -> None:
    """Run every check of :data:`IDGEN_CHECKS`, each on a fresh ``make_backend()`` (closed
    afterwards with ``aclose()``).

    Example::

        async def test_my_etcd():
            await check_idgen_backend(lambda: MyEtcd("http://127.0.0.1:2379"))
    """
    for check in IDGEN_CHECKS:
        backend = make_backend()
        try:
            await check(backend)
        finally:
            await backend.aclose()
