"""The base of the facades that own one live backend per actor incarnation (``Cache``,
``Locks``): connect, one real round trip, publish the backend in a
:class:`~gochat_actors._slot.Slot`, probe its health until cancelled, close it."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, NoReturn, Protocol, Self, TypeVar

import trio

from supervisors import ChildSpec, Health, cleanup_scope, progress, set_health

from ._exceptions import ComponentUnavailable, GochatError
from ._slot import Slot
from .log import get_logger

__all__ = ["Backend", "BackendOwner"]

_log = get_logger("gochat_actors.cache")


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
    ) -> None:
        self._what = what
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
        async with self._connect() as backend:
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
