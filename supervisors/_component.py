"""The Go original's Component / Factory interfaces, run as supervised children."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import trio

from ._child import ChildHandle, cleanup_scope, current_child
from ._health import Health
from ._spec import ChildSpec

__all__ = ["Component", "Factory", "component_spec"]


@runtime_checkable
class Component(Protocol):
    """A component with the original's lifecycle: ``init``, ``start``, ``stop``, ``health``.

    ``health()`` returns ``None`` or ``Health.OK`` when healthy, another :class:`Health`
    otherwise, or raises (counted as ``FAILED``, the message as the reason).

    Example::

        class Pinger:
            async def init(self, config): self.url = config["url"]
            async def start(self): self.client = await connect(self.url)
            async def stop(self): await self.client.aclose()
            async def health(self): await self.client.ping()
    """

    async def init(self, config: Any) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def health(self) -> Health | None: ...


@runtime_checkable
class Factory(Protocol):
    """Makes a fresh :class:`Component` from a config (one per incarnation).

    Example::

        class PingerFactory:
            def create(self, config): return Pinger()
    """

    def create(self, config: Any) -> Component: ...


async def _poll_health(component: Component, handle: ChildHandle) -> None:
    try:
        status = await component.health()
    except Exception as exc:
        handle.set_health(Health.FAILED, f"{type(exc).__name__}: {exc}")
        return
    if status is None:
        status = Health.OK
    handle.set_health(status, "" if status is Health.OK else f"health() returned {status.value}")


def component_spec(
    id: str,
    component_or_factory: Component | Factory,
    config: Any = None,
    *,
    health_interval: float = 5.0,
    **spec_options: Any,
) -> ChildSpec:
    """A :class:`ChildSpec` that runs a :class:`Component` (or one per restart from a
    :class:`Factory`): ``init(config)`` -> ``start()`` -> ready -> ``health()`` polled
    every ``health_interval`` seconds -> on shutdown ``stop()`` within the budget.

    ``started()`` hands the component to whoever started it.

    Example::

        value = await sup.start_child(component_spec("pinger", PingerFactory(), {"url": u}))
    """
    if not isinstance(component_or_factory, Component | Factory):
        raise TypeError(
            f"child {id!r}: expected a Component (init/start/stop/health) or a Factory "
            f"(create), got {component_or_factory!r}"
        )
    if health_interval <= 0:
        raise ValueError(f"child {id!r}: health_interval must be > 0, got {health_interval!r}")

    async def run_component(
        *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if isinstance(component_or_factory, Factory):
            component = component_or_factory.create(config)
        else:
            component = component_or_factory
        await component.init(config)
        await component.start()
        try:
            handle = current_child()
            await _poll_health(component, handle)
            task_status.started(component)
            while True:
                await trio.sleep(health_interval)
                await _poll_health(component, handle)
        finally:
            with cleanup_scope():
                await component.stop()

    spec_options.setdefault("kind", "component")
    return ChildSpec(id, run_component, **spec_options)
