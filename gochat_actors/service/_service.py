"""``open_service(settings)``: the standard tree."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import structlog
import trio

from supervisors import ChildSpec, Supervisor, open_supervisor

from .._bridge import Bridge
from .._exceptions import ComponentUnavailable, SettingsError
from .._tracing import leave_trace
from ..cache import Cache, MemoryStore
from ..config import Settings, check_runtime, load_settings
from ..db import DBManager, MemoryDB
from ..http import HTTPEndpoints
from ..idgen import IdGenerator
from ..lock import Locks
from ..log import SPAN_ID_KEY, TRACE_ID_KEY, configured, event_logger, get_logger
from ..metrics import Metrics, RuntimeMetrics
from ..mq import Connection, MemoryBroker, Producer, consumer_spec
from ..mq._ambient import serving_connection, using_service_connection
from ._backends import ServiceBackends, embedded_db

__all__ = ["COMPONENTS", "Service", "open_service", "untraced"]

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
        *,
        broker: MemoryBroker | None = None,
    ) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.metrics = metrics
        self.bridge = bridge
        self._components = components
        self._broker = broker  # the memory broker its components were given, if any

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

        Returns what the child gave to ``task_status.started()``. The child runs with
        no trace ID bound (see :func:`untraced`), whatever the caller has bound.
        """
        return await self.supervisor.start_child(untraced(spec))

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
        if self._broker is not None and "broker" not in options:
            options["broker"] = self._broker
        return consumer_spec(id, **options)


def untraced(spec: ChildSpec) -> ChildSpec:
    """``spec`` whose child starts every life with no trace ID bound.

    trio gives a new task a copy of the context of the task that starts it: a child
    started while a request's trace ID is bound would carry it for its whole first life
    (and its restarts, started by the supervisor, would not). A child is not part of
    any one request: each life starts untraced, and binds its own per unit of work.
    ``open_service`` applies it to every child, and ``Service.add_child`` too.

    Example::

        await sup.start_child(untraced(ChildSpec("worker", worker)))
    """
    target = spec.target
    takes_status = _takes_task_status(target)

    async def run_untraced(
        *args: Any, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # this task's own copy of the context: the starter's binding is untouched
        structlog.contextvars.unbind_contextvars(TRACE_ID_KEY, SPAN_ID_KEY)
        leave_trace()  # and OpenTelemetry's current span, when spans are on
        if takes_status:
            await target(*args, task_status=task_status)
        else:
            task_status.started()
            await target(*args)

    run_untraced.__name__ = run_untraced.__qualname__ = getattr(target, "__name__", spec.id)
    return dataclasses.replace(spec, target=run_untraced)


def _takes_task_status(target: Callable[..., Any]) -> bool:
    # as the supervisor decides: a task_status keyword (or **kwargs); odd callables do
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return True
    return "task_status" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def _log_child(settings: Settings, components: Iterable[str]) -> ChildSpec:
    # Logging itself is configured by open_service before anything runs (so that no line
    # escapes [log]); this child says the service is starting, and what it starts.
    async def log_setup(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        get_logger("gochat_actors.service").info("service starting", components=list(components))
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

    The embedded DB default (``sqlite+aiosqlite:///:memory:``, no replica) runs in place
    on the trio thread, not in aiosqlite's thread, so the whole default service runs
    under ``autojump_clock``; a SQLite file keeps aiosqlite.

    Start order: bridge, log, metrics, http, db, cache, locks, ids, producer, then
    ``children``. ``components`` picks a subset of :data:`COMPONENTS` (default: all;
    each section's embedded default needs no server). Other keyword options go to the
    root supervisor (``max_restarts``, ``backoff``, ...).

    Example::

        async with open_service(load_settings("app.toml")) as service:
            i = service.ids.next_id()
    """
    if settings is None:
        settings = load_settings()
    async with open_service_on(
        settings,
        ServiceBackends(),
        children=children,
        components=components,
        **supervisor_options,
    ) as service:
        yield service


@asynccontextmanager
async def open_service_on(
    settings: Settings,
    backends: ServiceBackends,
    *,
    children: Iterable[ChildSpec] = (),
    components: Iterable[str] | None = None,
    service_type: type[Service] = Service,
    **supervisor_options: Any,
) -> AsyncIterator[Service]:
    """:func:`open_service` with its components on ``backends`` where given (for
    :func:`gochat_actors.testing.open_test_service`), the service an instance of
    ``service_type``."""
    if isinstance(components, str):
        raise TypeError(f"components must be a list of component names, got {components!r}")
    wanted = tuple(COMPONENTS if components is None else components)
    unknown = sorted(set(wanted) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"unknown components {unknown}; choose from {list(COMPONENTS)}")
    if not settings.http.enabled:
        wanted = tuple(c for c in wanted if c != "http")
    problems = check_runtime(settings)
    if problems:
        raise SettingsError(problems)
    # Logging first, so that every line (the components' constructors', the bridge's)
    # follows [log]; the configuration from before is back when the service exits.
    with configured(settings.log, service=settings.service.name):
        async with _open_tree(
            settings, wanted, children, supervisor_options, backends, service_type
        ) as service:
            yield service


@asynccontextmanager
async def _open_tree(
    settings: Settings,
    wanted: tuple[str, ...],
    children: Iterable[ChildSpec],
    supervisor_options: dict[str, Any],
    backends: ServiceBackends,
    service_type: type[Service],
) -> AsyncIterator[Service]:
    metrics = Metrics(namespace=settings.metrics.namespace)
    used: Metrics | None = metrics if settings.metrics.enabled else None
    bridge = Bridge()
    built: dict[str, Any] = {}
    specs: list[ChildSpec] = [
        ChildSpec("bridge", bridge.run, shutdown=5.0),
        _log_child(settings, [c for c in COMPONENTS if c in wanted]),
    ]
    if used is not None:
        specs.append(RuntimeMetrics(metrics).spec("metrics"))
    if "http" in wanted:
        built["http"] = http = HTTPEndpoints(settings.http, metrics=used)
        specs.append(http.spec("http"))
    embedded: MemoryDB | None = None  # the service's own: closed when it stops
    if "db" in wanted:
        db_backend = backends.db
        if db_backend is None:
            db_backend = embedded = embedded_db(settings.db)
        built["db"] = db = DBManager(settings.db, bridge=bridge, metrics=used, backend=db_backend)
        specs.append(db.spec("db", depends_on=("bridge",)))
    cache: Cache | None = None
    if "cache" in wanted:
        built["cache"] = cache = Cache(settings.cache, metrics=used, store=backends.cache)
        specs.append(cache.spec("cache"))
    if "locks" in wanted:
        # With no lock url, locks live where the cache does: the same in-memory store
        # (the one given, even without the cache component: one Redis for both).
        store: MemoryStore | None = None
        if not settings.lock.url.reveal():
            store = cache.store if cache is not None else backends.cache
        built["locks"] = locks = Locks(
            settings.lock, cache_settings=settings.cache, metrics=used, store=store
        )
        specs.append(locks.spec("locks"))
    if "ids" in wanted:
        built["ids"] = ids = IdGenerator(
            settings.idgen,
            metrics=used,
            backend=backends.etcd,
            clock=backends.id_clock,
            seed=supervisor_options.get("seed"),  # one seed replays the IDs too
        )
        specs.append(ids.spec("ids"))
    if "producer" in wanted:
        built["producer"] = producer = Producer(
            settings.mq, bridge=bridge, metrics=used, broker=backends.broker
        )
        specs.append(producer.spec("producer", depends_on=("bridge",)))
        mq = producer.connection
    else:
        memory = settings.mq.is_memory
        mq = Connection(settings.mq, bridge=None if memory else bridge, broker=backends.broker)
    specs.extend(children)
    supervisor_options.setdefault("name", settings.service.name)
    supervisor_options.setdefault("on_event", event_logger())
    # Where the service's consumers connect, those made without settings too: the
    # children started with the tree from this context, those added later (from any
    # task) from the tree.
    try:
        with using_service_connection(mq):
            async with open_supervisor([untraced(s) for s in specs], **supervisor_options) as sup:
                with serving_connection(sup, mq):
                    broker = backends.broker
                    yield service_type(settings, sup, metrics, bridge, built, broker=broker)
    finally:
        if embedded is not None:
            embedded.close()
