"""The message queue's backends by scheme: ``memory://`` (the in-process broker) and
``kafka://host:port[,host:port]`` (aiokafka on the asyncio bridge, imported only when
used; a bare ``host:port[,...]`` list means Kafka). The registry also checks
``[mq] brokers`` (see :class:`~gochat_actors.mq.MQSettings`) and picks what
:meth:`Connection.open <gochat_actors.mq.Connection.open>` builds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._backends import Backends

if TYPE_CHECKING:
    from ._connect import Connection
    from ._protocol import MQBackend

__all__ = ["BACKENDS", "MQFactory", "split_brokers"]

BARE = "kafka"
"""The backend of a bare ``host:port[,host:port]`` list (no scheme)."""


@dataclass(frozen=True, slots=True)
class MQFactory:
    """How a backend opens: ``open(connection, timeout)`` (one real round trip for a
    server), and whether it runs on the asyncio bridge (``bridged``: then the
    :class:`Connection` needs ``bridge=``).

    Example::

        BACKENDS.factory("memory").bridged     # False
    """

    open: Callable[[Connection, float], Awaitable[MQBackend]]
    bridged: bool


def split_brokers(brokers: str) -> tuple[str, str]:
    """``(scheme, rest)`` of ``[mq] brokers``: a bare host list is ``("kafka", list)``.

    Example::

        split_brokers("memory://")                 # ("memory", "")
        split_brokers("10.0.0.1:9092,10.0.0.2:9092")  # ("kafka", "10.0.0.1:9092,...")
    """
    scheme, sep, rest = brokers.partition("://")
    return (scheme, rest) if sep else (BARE, brokers)


async def _memory(connection: Connection, timeout: float) -> MQBackend:
    from ._memory import MemoryBackend, default_broker

    broker = connection.broker if connection.broker is not None else default_broker()
    return MemoryBackend(broker, max_message_bytes=connection.max_message_bytes)


async def _kafka(connection: Connection, timeout: float) -> MQBackend:
    import trio

    from .._exceptions import BridgeError, MQUnavailable
    from ._kafka import KafkaBackend  # aiokafka is imported only when used

    assert connection.bridge is not None  # Connection checked it: the factory is bridged
    backend = KafkaBackend(
        connection.settings,
        connection.bridge,
        acks=connection.acks,
        request_timeout=connection.request_timeout,
        max_message_bytes=connection.max_message_bytes,
    )
    with trio.move_on_after(timeout) as scope:
        try:
            await backend.start()
        except BridgeError as exc:
            raise MQUnavailable(f"connect: {exc}") from exc
    if scope.cancelled_caught:
        brokers = connection.settings.brokers
        raise MQUnavailable(f"connect: no answer from {brokers} within {timeout:g}s")
    return backend


BACKENDS: Backends[MQFactory] = Backends("mq")
BACKENDS.add(MQFactory(_kafka, bridged=True), "kafka")
BACKENDS.add(MQFactory(_memory, bridged=False), "memory")
