"""The producer's admin calls (topics, offsets), on the connection its actor holds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import trio

from .._exceptions import MQTimeout
from ._protocol import MQBackend, TopicPartition
from ._sender import check_timeout

__all__ = ["Admin"]

T = TypeVar("T")


class Admin:
    """Topic and offset calls, each bounded by its ``timeout`` (default ``timeout``)
    from the call on, waiting for ``backend(wait)`` (the producer's current connection)
    first.

    Example::

        admin = Admin(producer_backend, timeout=10.0)
        await admin.create_topic("chat.messages", 8)
    """

    __slots__ = ("_backend", "_timeout")

    def __init__(self, backend: Callable[[float], Awaitable[MQBackend]], timeout: float) -> None:
        self._backend = backend
        self._timeout = timeout

    async def _call(
        self, what: str, timeout: float | None, fn: Callable[[MQBackend], Awaitable[T]]
    ) -> T:
        wait = self._timeout if timeout is None else check_timeout(timeout)
        deadline = trio.current_time() + wait
        backend = await self._backend(wait)
        with trio.move_on_at(deadline):
            return await fn(backend)
        raise MQTimeout(f"{what}: no answer within {wait:g}s")

    async def create_topic(
        self, topic: str, partitions: int = 1, *, timeout: float | None = None
    ) -> None:
        """Create ``topic`` with ``partitions`` partitions (an existing one is left as is)."""
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty str, got {topic!r}")
        if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
            raise ValueError(f"partitions must be an int >= 1, got {partitions!r}")
        await self._call(
            f"create_topic {topic!r}", timeout, lambda b: b.create_topic(topic, partitions)
        )

    async def end_offsets(
        self, partitions: Sequence[TopicPartition], *, timeout: float | None = None
    ) -> dict[TopicPartition, int]:
        """The next offset to be written in each partition (its high watermark)."""
        return await self._call("end_offsets", timeout, lambda b: b.end_offsets(partitions))

    async def committed(
        self, group_id: str, partitions: Sequence[TopicPartition], *, timeout: float | None = None
    ) -> dict[TopicPartition, int | None]:
        """The offsets ``group_id`` committed (None where it never did)."""
        return await self._call("committed", timeout, lambda b: b.committed(group_id, partitions))
