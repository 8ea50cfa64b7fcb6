"""The actor that owns a live backend: connect, one real round trip, publish it in a
:class:`~gochat_actors._slot.Slot`, probe its health until cancelled, close it.

Shared by the cache and the lock facades (both own one Redis client or one in-memory
connection per incarnation).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, NoReturn, Protocol, TypeVar

import trio

from supervisors import Health, cleanup_scope, current_child

from .._exceptions import GochatError
from .._slot import Slot
from ..log import get_logger

__all__ = ["Backend", "serve_backend"]

_log = get_logger("gochat_actors.cache")


class Backend(Protocol):
    """What the actor needs of a backend: a round trip and a close."""

    async def ping(self) -> None: ...
    async def aclose(self) -> None: ...


B = TypeVar("B", bound=Backend)


async def serve_backend(
    what: str,
    connect: Callable[[], AbstractAsyncContextManager[B]],
    slot: Slot[B],
    ready_value: Any,
    *,
    op_timeout: float,
    probe_interval: float,
    unavailable: type[GochatError],
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run one incarnation of ``what``'s backend actor; see the module docstring.

    Raises ``unavailable`` (the child fails to start) when the first ping fails or takes
    longer than ``op_timeout``. Later failed probes only set the child's health to
    ``DEGRADED`` (callers get errors meanwhile; the connection heals itself).

    Example::

        async def run(self, *, task_status=trio.TASK_STATUS_IGNORED):
            await serve_backend("cache", self._connect, self._slot, self,
                                op_timeout=1.0, probe_interval=5.0,
                                unavailable=CacheUnavailable, task_status=task_status)
    """
    async with connect() as backend:
        try:
            await _ping(what, backend, op_timeout, unavailable)
            slot.fill(backend)
            task_status.started(ready_value)
            _log.info("backend ready", component=what)
            while True:
                await trio.sleep(probe_interval)
                try:
                    await _ping(what, backend, op_timeout, unavailable)
                except GochatError as exc:
                    _set_health(Health.DEGRADED, str(exc))
                else:
                    _set_health(Health.OK)
        finally:
            slot.clear()
            with cleanup_scope(op_timeout):
                await backend.aclose()


async def _ping(
    what: str, backend: Backend, timeout: float, unavailable: type[GochatError]
) -> None:
    with trio.move_on_after(timeout) as scope:
        await backend.ping()
    if scope.cancelled_caught:
        raise unavailable(f"{what}: no answer to PING within {timeout:g}s")


def _set_health(status: Health, reason: str = "") -> None:
    try:
        child = current_child()
    except RuntimeError:  # run outside a supervisor (a plain nursery.start)
        return
    child.set_health(status, reason)
    child.progress()
