"""The base of the facades that own one live backend per actor incarnation (``Cache``,
``Locks``): connect, one real round trip, publish the backend in a
:class:`~gochat_actors._slot.Slot`, probe its health until cancelled, close it."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, NoReturn, Protocol, Self, TypeVar

import trio

from supervisors import ChildSpec, Health, cleanup_scope, progress, set_health

from ._dsn import Dsn
from ._exceptions import ComponentUnavailable, GochatError
from ._slot import Slot
from .log import get_logger

__all__ = ["Backend", "BackendOwner", "connect_budget"]

_log = get_logger("gochat_actors.cache")


def connect_budget(url: Dsn, op_timeout: float) -> float:
    """How long connecting to ``url``'s servers may take: each member of the URL (a
    cluster's, a Sentinel's) may be tried in turn, each with a connect and a first
    reply bounded by ``op_timeout``.

    Example::

        >>> connect_budget(Dsn("redis+cluster://h1:7001,h2:7002,h3:7003"), 0.5)
        3.0
    """
    return 2 * op_timeout * max(1, len(url.members))


class Backend(Protocol):
    """What the actor needs of a backend: a round trip and a close."""

    async def ping(self) -> None: ...
    async def aclose(self) -> None: ...


B = TypeVar("B", bound=Backend)


class BackendOwner(Generic[B]):
    """Owns the backend ``connect()`` opens, one per actor incarnation, in ``self._slot``.

    Facade calls take the live backend with ``await self._slot.get(timeout)``, waiting
    through a restart. The first ping failing (or taking longer than ``op_timeout``)
    fails the start with ``unavailable``; later failed probes only set the child's
    health to ``DEGRADED`` (callers get errors meanwhile, the connection heals itself).
    Connecting takes at most ``connect_timeout`` (default: ``op_timeout``), else the
    start fails with ``unavailable`` too.

    Example::

        class Cache(BackendOwner[CacheBackend]):
            def __init__(self, settings):
                super().__init__("cache", connect, op_timeout=1.0, probe_interval=5.0,
                                 unavailable=CacheUnavailable)
    """

    def __init__(
        self,
        what: str,
        connect: Callable[[], AbstractAsyncContextManager[B]],
        *,
        op_timeout: float,
        probe_interval: float,
        unavailable: type[ComponentUnavailable],
        connect_timeout: float | None = None,
    ) -> None:
        self._what = what
        self._connect_timeout = op_timeout if connect_timeout is None else connect_timeout
        self._connect = connect
        self._op_timeout = op_timeout
        self._probe_interval = probe_interval
        self._unavailable = unavailable
        self._slot: Slot[B] = Slot(what, error=unavailable)

    def _spec(self, id: str, spec_options: dict[str, Any]) -> ChildSpec:
        return ChildSpec(id, self.run, **spec_options)

    @property
    def running(self) -> bool:
        """True while a backend is connected."""
        return self._slot.value is not None

    async def run(
        self, *, task_status: trio.TaskStatus[Self] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Connect, ping once, serve until cancelled (``task_status.started(self)`` when
        ready); closes the backend within the child's shutdown budget.

        Example::

            await nursery.start(cache.run)   # or run cache.spec() in a supervisor
        """
        # The connect (a cluster's slot-map lookup, a Sentinel's master lookup) is bounded:
        # a server that accepts and never answers must fail the start, not hang it. The
        # scope lifts its deadline once connected (it must enclose the whole block: the
        # client's task group opens inside it).
        with trio.CancelScope(deadline=trio.current_time() + self._connect_timeout) as bound:
            async with self._connect() as backend:
                bound.deadline = math.inf
                await self._serve(backend, task_status)
        raise self._unavailable(f"{self._what}: not connected within {self._connect_timeout:g}s")

    async def _serve(self, backend: B, task_status: trio.TaskStatus[Self]) -> NoReturn:
        """Ping once, publish ``backend``, probe it until cancelled; then close it."""
        try:
            await self._ping(backend)
            self._slot.fill(backend)
            task_status.started(self)
            _log.info("backend ready", component=self._what)
            while True:
                await trio.sleep(self._probe_interval)
                why = await self._not_ready(backend)
                try:
                    await self._ping(backend)
                except GochatError as exc:
                    set_health(Health.FAILED if why else Health.DEGRADED, why or str(exc))
                else:
                    set_health(Health.FAILED if why else Health.OK, why or "")
                progress()
        finally:
            self._slot.clear()
            with cleanup_scope(self._op_timeout):
                await backend.aclose()

    async def _not_ready(self, backend: B) -> str | None:
        """Why the backend's servers cannot serve now, for backends that can tell (a
        Sentinel backend: no master); ``FAILED`` health, so ``/readyz`` says not ready."""
        check = getattr(backend, "not_ready", None)
        if check is None:
            return None
        with trio.move_on_after(self._op_timeout):
            why: str | None = await check()
            return why
        return f"{self._what}: no answer about readiness within {self._op_timeout:g}s"

    async def _ping(self, backend: B) -> None:
        with trio.move_on_after(self._op_timeout) as scope:
            await backend.ping()
        if scope.cancelled_caught:
            raise self._unavailable(f"{self._what}: no answer to PING within {self._op_timeout:g}s")
