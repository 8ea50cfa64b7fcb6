"""Opening a backend from settings, and the broker watch both actors run (readiness)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal, NoReturn

import trio

from supervisors import Health, cleanup_scope, current_child

from .._bridge import Bridge
from .._exceptions import BridgeError, MQError, MQUnavailable
from ..log import get_logger
from ._backends import BACKENDS
from ._memory import MemoryBroker
from ._protocol import MQBackend
from ._settings import MQSettings

__all__ = ["BrokerWatch", "Connection", "set_child_health"]

_log = get_logger("gochat_actors.mq")

Acks = Literal["all", 1, 0]


class Connection:
    """How to reach the broker: settings, the bridge (Kafka) or the memory broker.

    Checks the combination once, at construction: Kafka brokers need ``bridge``; a
    ``broker`` is only for ``memory://`` (without one, ``memory://`` is the broker of the
    current ``trio.run``).

    Example::

        conn = Connection(MQSettings(brokers="127.0.0.1:9092"), bridge=bridge)
        backend = await conn.open(timeout=5.0)
    """

    def __init__(
        self,
        settings: MQSettings,
        *,
        bridge: Bridge | None = None,
        broker: MemoryBroker | None = None,
        acks: Acks = "all",
        request_timeout: float = 10.0,
        max_message_bytes: int = 1_048_576,
    ) -> None:
        if not isinstance(settings, MQSettings):
            raise TypeError(f"settings must be an MQSettings, got {type(settings).__name__}")
        if bridge is not None and not isinstance(bridge, Bridge):
            raise TypeError(f"bridge must be a gochat_actors.Bridge, got {type(bridge).__name__}")
        if broker is not None and not isinstance(broker, MemoryBroker):
            raise TypeError(f"broker must be a MemoryBroker, got {type(broker).__name__}")
        self._factory = BACKENDS.factory(settings.backend)
        if not self._factory.bridged:
            if bridge is not None:
                _log.debug("mq bridge given but unused", brokers=settings.brokers)
        elif bridge is None:
            raise ValueError(
                f"brokers = {settings.brokers!r} needs bridge=: Kafka runs on the asyncio "
                "bridge (start the Bridge as a sibling and pass depends_on=('bridge',))"
            )
        if broker is not None and not settings.is_memory:
            raise ValueError("broker= is the in-memory broker: only with brokers = memory://")
        if acks not in ("all", 1, 0):
            raise ValueError(f"acks must be 'all', 1 or 0, got {acks!r}")
        if not isinstance(max_message_bytes, int) or max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be an int >= 1, got {max_message_bytes!r}")
        if not isinstance(request_timeout, int | float) or not request_timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {request_timeout!r}")
        self.settings = settings
        self.bridge = bridge
        self.broker = broker
        self.acks: Acks = acks
        self.request_timeout = float(request_timeout)
        self.max_message_bytes = max_message_bytes

    @asynccontextmanager
    async def connect(self, timeout: float = 10.0) -> AsyncIterator[MQBackend]:
        """:meth:`open` a backend for the block, then close it.

        Example::

            async with Connection(MQSettings(), broker=MemoryBroker()).connect() as backend:
                await backend.create_topic("chat.messages", 4)
        """
        backend = await self.open(timeout)
        try:
            yield backend
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(timeout):
                await backend.aclose()

    @asynccontextmanager
    async def serve(
        self, what: str, *, connect_timeout: float, probe_interval: float
    ) -> AsyncIterator[tuple[MQBackend, BrokerWatch]]:
        """For an actor: open a backend, check the broker answers (``MQUnavailable`` if
        not: the child fails to start), yield it with its :class:`BrokerWatch`, and close
        it in the child's bounded cleanup.

        Example::

            async with conn.serve("producer", connect_timeout=10, probe_interval=2) as (
                backend, watch):
                nursery.start_soon(watch.run, backend)
        """
        backend = await self.open(connect_timeout)
        try:
            watch = BrokerWatch(what, interval=probe_interval, timeout=self.request_timeout)
            if not await watch.check(backend):
                raise MQUnavailable(f"{what}: the broker {self.settings.brokers} does not answer")
            yield backend, watch
        finally:
            with cleanup_scope():
                try:
                    await backend.aclose()
                except (MQError, BridgeError) as exc:
                    _log.warning("mq close failed", actor=what, error=str(exc))

    async def open(self, timeout: float) -> MQBackend:
        """Connect (one real round trip); raises ``MQUnavailable`` after ``timeout``.
        The backend is the one registered for the settings' scheme (``mq/_backends.py``)."""
        return await self._factory.open(self, timeout)


def set_child_health(status: Health, reason: str = "") -> None:
    """``supervisors.set_health`` that does nothing outside a supervised child."""
    try:
        child = current_child()
    except RuntimeError:
        return
    child.set_health(status, reason)


class BrokerWatch:
    """Pings the broker every ``interval``; the child is not ready (``Health.FAILED``)
    while the broker does not answer within ``timeout``, ready again once it does.

    Example::

        watch = BrokerWatch("producer", interval=2.0, timeout=2.0)
        nursery.start_soon(watch.run, backend)
        if not watch.reachable: ...
    """

    def __init__(self, what: str, *, interval: float, timeout: float) -> None:
        self.what = what
        self.interval = interval
        self.timeout = timeout
        self.reachable = True
        self._degraded = ""

    def degrade(self, reason: str) -> None:
        """Report ``Health.DEGRADED`` for ``reason`` (``""``: cleared, ``OK``), but only
        while the broker answers: an unreachable broker's ``FAILED`` stays until it does.

        Example::

            watch.degrade("dead-letter topic 'chat.dlq' unavailable")
        """
        self._degraded = reason
        if self.reachable:
            self._report_ok()

    def _report_ok(self) -> None:
        if self._degraded:
            set_child_health(Health.DEGRADED, self._degraded)
        else:
            set_child_health(Health.OK)

    async def check(self, backend: MQBackend) -> bool:
        """One ping; update ``reachable`` and the child's health; return ``reachable``."""
        error = ""
        with trio.move_on_after(self.timeout) as scope:
            try:
                await backend.ping()
            except (MQError, BridgeError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        if scope.cancelled_caught:
            error = f"no answer within {self.timeout:g}s"
        reachable = not error
        if reachable != self.reachable:
            if reachable:
                _log.info("mq broker reachable again", actor=self.what)
                self._report_ok()
            else:
                _log.warning("mq broker unreachable", actor=self.what, error=error)
                set_child_health(Health.FAILED, f"broker unreachable: {error}")
        self.reachable = reachable
        return reachable

    async def run(self, backend: MQBackend) -> NoReturn:
        """Check forever (a task in the actor's nursery)."""
        while True:
            await trio.sleep(self.interval)
            await self.check(backend)
