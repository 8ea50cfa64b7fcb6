"""The small etcd Protocol the machine-ID keeper needs (real etcd over HTTP, in-memory)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "Compare",
    "Delete",
    "EtcdBackend",
    "Get",
    "KeyValue",
    "Op",
    "Put",
    "TxnResult",
    "prefix_end",
]


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as etcd returns it (``value`` is ``b""`` in a ``keys_only`` range)."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Compare:
    """A txn condition: ``target`` of ``key`` equals ``value``.

    ``create`` is the key's create revision (0 when absent), ``mod`` its mod revision,
    ``version`` its version, ``value`` its bytes.

    Example::

        Compare(b"/ids/7", "create", 0)   # the key does not exist
    """

    key: bytes
    target: Literal["create", "mod", "version", "value"]
    value: int | bytes


@dataclass(frozen=True, slots=True)
class Put:
    """A txn operation: store ``value`` at ``key``, attached to ``lease`` when not 0."""

    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Get:
    """A txn operation: read ``key`` (or ``[key, range_end)`` when ``range_end`` is set)."""

    key: bytes
    range_end: bytes = b""


@dataclass(frozen=True, slots=True)
class Delete:
    """A txn operation: delete ``key`` (or ``[key, range_end)``)."""

    key: bytes
    range_end: bytes = b""


Op: TypeAlias = Put | Get | Delete
"""One operation of a txn branch."""


@dataclass(frozen=True, slots=True)
class TxnResult:
    """The outcome of a txn: which branch ran, the store revision after it, and one
    response per operation of that branch (``None`` for a put, the key-values for a
    get, the number of deleted keys for a delete)."""

    succeeded: bool
    revision: int
    responses: tuple[list[KeyValue] | int | None, ...]


@runtime_checkable
class EtcdBackend(Protocol):
    """The etcd v3 operations the keeper uses: kv range/put/delete/txn and leases.

    ``range_end`` follows etcd: ``b""`` means the single ``key``, :func:`prefix_end`
    covers a prefix. Leases are integer IDs with integer-second TTLs. A lease etcd does
    not know is not an error for :meth:`lease_keepalive` / :meth:`lease_time_to_live`
    (they return ``None``) nor for :meth:`lease_revoke` (``False``); attaching a key to
    one raises :class:`~gochat_actors.MachineIdLost`. An unreachable or failing server
    raises :class:`~gochat_actors.IdGenUnavailable`.

    Example::

        lease = (await backend.lease_grant(10))[0]
        result = await backend.txn(
            [Compare(b"/ids/7", "create", 0)], [Put(b"/ids/7", b"me", lease)]
        )
    """

    async def range(
        self, key: bytes, range_end: bytes = b"", *, keys_only: bool = False
    ) -> list[KeyValue]:
        """The keys in ``[key, range_end)`` (or just ``key``), sorted."""
        ...

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Store ``value`` at ``key``; the new store revision."""
        ...

    async def delete(self, key: bytes, range_end: bytes = b"") -> int:
        """Delete ``key`` (or ``[key, range_end)``); how many keys were deleted."""
        ...

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Run ``success`` if every comparison holds, else ``failure``, atomically."""
        ...

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: ``(lease_id, ttl)``; the TTL granted may be longer than asked."""
        ...

    async def lease_keepalive(self, lease: int) -> int | None:
        """Refresh ``lease``; its TTL again, or ``None`` when etcd no longer has it."""
        ...

    async def lease_revoke(self, lease: int) -> bool:
        """Revoke ``lease`` (its keys are deleted); ``False`` if etcd did not have it."""
        ...

    async def lease_time_to_live(self, lease: int) -> int | None:
        """Seconds ``lease`` has left, or ``None`` when etcd does not have it."""
        ...

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        ...


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` covering every key that starts with ``prefix``.

    Example::

        >>> prefix_end(b"/ids/")
        b'/ids0'
    """
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"
