"""``open_service(settings)``: the standard tree, and ``run(main)`` for a service's main."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import trio

import supervisors
from supervisors import ChildSpec, Supervisor, open_supervisor

from .._bridge import Bridge
from .._exceptions import ComponentUnavailable
from ..cache import Cache
from ..db import DBManager
from ..http import HTTPEndpoints
from ..idgen import IdGenerator
from ..lock import Locks
from ..log import configure, event_logger, get_logger
from ..metrics import Metrics, RuntimeMetrics
from ..mq import Producer, consumer_spec

if TYPE_CHECKING:  # config imports this package (for ServiceSettings): import it lazily
    from ..config import Settings

__all__ = ["COMPONENTS", "Service", "open_service", "run"]

T = TypeVar("T")

COMPONENTS = ("http", "db", "cache", "locks", "ids", "producer")
"""The components ``open_service`` can start, besides the bridge, logs and metrics."""


class Service:
    """The running standard tree: the components, their supervisor, settings, metrics.

    Components that were left out (``open_service(components=...)``) raise
    :class:`ComponentUnavailable` when used.

    Example::

        async with open_service(load_settings()) as service:
            await service.cache.set("k", b"v")
            await service.add_child(my_actor_spec)
    """

    def __init__(
        self,
        settings: Settings,
        supervisor: Supervisor,
        metrics: Metrics,
        bridge: Bridge,
        components: dict[str, Any],
    ) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.metrics = metrics
        self.bridge = bridge
        self._components = components

    def _get(self, name: str) -> Any:
        try:
            return self._components[name]
        except KeyError:
            raise ComponentUnavailable(
                f"service.{name} is not part of this service "
                f"(components={sorted(self._components)})"
            ) from None

    @property
    def db(self) -> DBManager:
        """The database (primary + replicas)."""
        db: DBManager = self._get("db")
        return db

    @property
    def cache(self) -> Cache:
        """The cache (Redis, or in memory)."""
        cache: Cache = self._get("cache")
        return cache

    @property
    def locks(self) -> Locks:
        """Distributed locks with fencing tokens."""
        locks: Locks = self._get("locks")
        return locks

    @property
    def ids(self) -> IdGenerator:
        """The Snowflake ID generator."""
        ids: IdGenerator = self._get("ids")
        return ids

    @property
    def producer(self) -> Producer:
        """The Kafka (or in-memory) producer."""
        producer: Producer = self._get("producer")
        return producer

    @property
    def http(self) -> HTTPEndpoints:
        """The /metrics, /healthz, /readyz and /debug/tree endpoints."""
        http: HTTPEndpoints = self._get("http")
        return http

    async def add_child(self, spec: ChildSpec) -> Any:
        """Start one of the service's own children (an actor, a consumer) in the tree.

        Returns what the child gave to ``task_status.started()``.
        """
        return await self.supervisor.start_child(spec)

    def consumer_spec(self, id: str, **options: Any) -> ChildSpec:
        """:func:`gochat_actors.mq.consumer_spec` with this service's settings, bridge and
        metrics filled in (and ``depends_on`` the bridge).

        Example::

            await service.add_child(service.consumer_spec(
                "persister", topics=["chat.messages"], group_id="persister", processor=persist))
        """
        options.setdefault("settings", self.settings.mq)
        options.setdefault("bridge", self.bridge)
        options.setdefault("metrics", self.metrics if self.settings.metrics.enabled else None)
        options.setdefault("depends_on", ("bridge",))
        return consumer_spec(id, **options)


def _log_child(settings: Settings) -> ChildSpec:
    async def log_setup(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        configure(settings.log, service=settings.service.name)
        get_logger("gochat_actors.service").info("service starting", components=list(COMPONENTS))
        task_status.started()
        await trio.sleep_forever()

    return ChildSpec("log", log_setup, significant=False, shutdown=1.0)


@asynccontextmanager
async def open_service(
    settings: Settings | None = None,
    *,
    children: Iterable[ChildSpec] = (),
    components: Iterable[str] | None = None,
    **supervisor_options: Any,
) -> AsyncIterator[Service]:
    """Build and run the standard tree from ``settings``; yield the :class:`Service`.

    Start order: bridge, log, metrics, http, db, cache, locks, ids, producer, then
    ``children``. ``components`` picks a subset of :data:`COMPONENTS` (default: all;
    each section's embedded default needs no server). Other keyword options go to the
    root supervisor (``max_restarts``, ``backoff``, ...).

    Example::

        async with open_service(load_settings("app.toml")) as service:
            i = service.ids.next_id()
    """
    if settings is None:
        from ..config import load_settings

        settings = load_settings()
    wanted = tuple(COMPONENTS if components is None else components)
    unknown = sorted(set(wanted) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"unknown components {unknown}; choose from {list(COMPONENTS)}")
    if not settings.http.enabled:
        wanted = tuple(c for c in wanted if c != "http")
    metrics = Metrics(namespace=settings.metrics.namespace)
    used: Metrics | None = metrics if settings.metrics.enabled else None
    bridge = Bridge()
    built: dict[str, Any] = {}
    specs: list[ChildSpec] = [
        ChildSpec("bridge", bridge.run, shutdown=5.0),
        _log_child(settings),
    ]
    if used is not None:
        specs.append(RuntimeMetrics(metrics).spec("metrics"))
    if "http" in wanted:
        built["http"] = http = HTTPEndpoints(settings.http, metrics=used)
        specs.append(http.spec("http"))
    if "db" in wanted:
        built["db"] = db = DBManager(settings.db, bridge=bridge, metrics=used)
        specs.append(db.spec("db", depends_on=("bridge",)))
    cache: Cache | None = None
    if "cache" in wanted:
        built["cache"] = cache = Cache(settings.cache, metrics=used)
        specs.append(cache.spec("cache"))
    if "locks" in wanted:
        # With no lock url, locks live where the cache does: the same in-memory store.
        store = cache.store if cache is not None and not settings.lock.url.reveal() else None
        built["locks"] = locks = Locks(
            settings.lock, cache_settings=settings.cache, metrics=used, store=store
        )
        specs.append(locks.spec("locks"))
    if "ids" in wanted:
        built["ids"] = ids = IdGenerator(settings.idgen, metrics=used)
        specs.append(ids.spec("ids"))
    if "producer" in wanted:
        built["producer"] = producer = Producer(settings.mq, bridge=bridge, metrics=used)
        specs.append(producer.spec("producer", depends_on=("bridge",)))
    specs.extend(children)
    supervisor_options.setdefault("name", settings.service.name)
    supervisor_options.setdefault("on_event", event_logger())
    async with open_supervisor(specs, **supervisor_options) as sup:
        yield Service(settings, sup, metrics, bridge, built)


def run(
    main: Callable[[Service], Awaitable[T]],
    settings: Settings | None = None,
    **service_options: Any,
) -> T | None:
    """Run ``main(service)`` inside :func:`open_service`, under trio, until it returns or
    SIGINT/SIGTERM stops it gracefully (a second signal: at once), with
    :func:`supervisors.run`. Returns ``main``'s result; when a signal stopped it, raises
    ``SystemExit(128 + signal)`` once the tree has stopped (exit code 130 after SIGINT,
    143 after SIGTERM).

    Example::

        async def main(service: Service) -> None:
            await service.add_child(my_spec)
            await trio.sleep_forever()

        if __name__ == "__main__":
            gochat_actors.run(main)
    """

    async def service_main() -> T:
        async with open_service(settings, **service_options) as service:
            return await main(service)

    return supervisors.run(service_main)
