"""``open_test_service``: the standard tree with every component in memory, faults at hand."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from .._dsn import Dsn
from ..cache import MemoryStore
from ..db import MemoryDB
from ..idgen import MemoryEtcd, TrioIdClock
from ..mq import MemoryBroker
from ..service import Service
from ..service._backends import ServiceBackends
from ..service._service import open_service_on
from ._faults import DEFAULT_SPARED, ServiceFaultPlan, ServiceFaults

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["TestService", "in_memory_settings", "open_test_service"]

_MEMORY = Dsn("memory://")


class TestService(Service):
    """The :class:`~gochat_actors.Service` of :func:`open_test_service`, with
    :attr:`faults` (its servers' switches) and :meth:`fault_plan`.

    Example::

        async with open_test_service() as svc:
            svc.faults.cache.pause()
    """

    __test__ = False  # not a pytest test class, whatever its name says

    faults: ServiceFaults
    """The switches of the service's in-memory servers."""

    async def fault_plan(
        self,
        seed: int,
        *,
        duration: float = 10.0,
        faults: int = 5,
        include: Sequence[str] = ("**",),
        exclude: Sequence[str] = DEFAULT_SPARED,
        servers: Sequence[str] | None = None,
        max_pause: float | None = None,
        id: str = "fault-plan",
    ) -> ServiceFaultPlan:
        """Start a :class:`ServiceFaultPlan` drawn from ``seed`` as the child ``id`` of
        the service's tree, and return it: ``faults`` faults over ``duration`` seconds,
        kills of the children running now and pauses of the in-memory servers. Start it
        after the children it should target.

        Example::

            plan = await svc.fault_plan(7, duration=30.0, faults=12)
        """
        plan = ServiceFaultPlan(
            self.faults,
            seed,
            duration=duration,
            count=faults,
            include=include,
            exclude=exclude,
            servers=servers,
            max_pause=max_pause,
        )
        await self.supervisor.start_child(plan.spec(id))
        return plan


def in_memory_settings(settings: Settings, *, db_replicas: int | None = None) -> Settings:
    """``settings`` with every section that names a server pointed at memory: ``[db]``
    at a :class:`~gochat_actors.db.MemoryDB` primary (and ``db_replicas`` replicas,
    default as many as ``[db] replicas`` names), ``[cache]`` at ``memory://``, ``[lock]``
    at the cache's store, ``[mq]`` at ``memory://``, ``[idgen]`` at ``memory://`` etcd.
    Their other fields (TTLs, probe intervals, prefixes...) are kept.

    Example::

        in_memory_settings(load_settings("chat.toml"), db_replicas=1).cache.url  # memory://
    """
    replicas = len(settings.db.replicas) if db_replicas is None else db_replicas
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ValueError(f"db_replicas must be an int >= 0, got {db_replicas!r}")
    db = MemoryDB().settings(
        replicas=replicas, **settings.db.model_dump(exclude={"primary", "replicas"})
    )
    return settings.model_copy(
        update={
            "db": db,
            "cache": settings.cache.model_copy(update={"url": _MEMORY}),
            "lock": settings.lock.model_copy(update={"url": Dsn("")}),
            "mq": settings.mq.model_copy(update={"brokers": "memory://"}),
            "idgen": settings.idgen.model_copy(update={"etcd": _MEMORY}),
        }
    )


@contextmanager
def seeded_random(seed: object) -> Iterator[None]:
    """Within the block, Python's global ``random`` draws from ``seed`` (a stream of
    its own, not ``random.seed(seed)``'s); its state before is restored after. ``None``:
    left alone.

    The components' jitter (lock retries and renewals, DB and consumer retries,
    dead-letter backoff, the memory broker's partition for a keyless message) and the
    user's own ``random`` calls then replay with the service's seed, as Hypothesis does
    for each example.

    Example::

        with seeded_random(7):
            random.random()     # the same value in every run
    """
    if seed is None:
        yield
        return
    state = random.getstate()
    random.seed(f"gochat-test-service:{seed!r}")
    try:
        yield
    finally:
        random.setstate(state)


@asynccontextmanager
async def open_test_service(
    settings: Settings | None = None,
    *,
    db_replicas: int | None = None,
    **open_service_options: Any,
) -> AsyncIterator[TestService]:
    """:func:`~gochat_actors.open_service` with every component in memory, on the trio
    clock (``autojump_clock`` and ``MockClock`` drive all of it); yields a
    :class:`TestService`.

    ``settings`` defaults to the embedded defaults with the HTTP endpoints off (no file,
    no environment). Whatever they say, the components run on the service's own
    in-memory servers (see :func:`in_memory_settings`): a ``MemoryDB`` (``db_replicas``
    replicas), one ``MemoryStore`` for the cache and the locks, ``MemoryEtcd`` for the
    machine-ID leases (IDs on a :class:`~gochat_actors.idgen.TrioIdClock`), a
    ``MemoryBroker`` for the producer and the consumers (``svc.consumer_spec``, and
    ``consumer_spec`` without settings). ``svc.faults`` reaches their switches.
    ``open_service_options`` go to ``open_service`` (``children=``, ``components=``,
    and the root supervisor's ``on_event=``, ``seed=``, ``max_restarts=``...). With a
    ``seed=``, Python's global ``random`` draws from that seed inside the block and gets
    its state back after (:func:`seeded_random`): every draw of the components, and the
    test's own, replays with the seed.

    Example::

        async with open_test_service(on_event=trace, seed=7) as svc:
            svc.faults.cache.pause()
            svc.faults.db.replica(0).delay = 3.0
    """
    if settings is None:
        from ..config import Settings
        from ..http import HTTPSettings

        settings = Settings(http=HTTPSettings(enabled=False))
    settings = in_memory_settings(settings, db_replicas=db_replicas)
    components = open_service_options.pop("components", None)
    if components is not None and not isinstance(components, str):
        components = tuple(components)  # read twice: by the faults and by open_service
    memdb, store, etcd, broker = MemoryDB(), MemoryStore(), MemoryEtcd(), MemoryBroker()
    backends = ServiceBackends(
        db=memdb, cache=store, etcd=etcd, id_clock=TrioIdClock(), broker=broker
    )
    # memdb: closed (its SQLite databases) once the service has stopped
    with seeded_random(open_service_options.get("seed")), memdb:
        faults = ServiceFaults(
            db=memdb,
            cache=store,
            etcd=etcd,
            broker=broker,
            replicas=len(settings.db.replicas),
            components=components,
        )
        async with open_service_on(
            settings,
            backends,
            service_type=TestService,
            components=components,
            **open_service_options,
        ) as service:
            assert isinstance(service, TestService)
            service.faults = faults
            try:
                yield service
            finally:
                # Before the children stop: a server left paused, or paused again by a
                # running fault plan, would hang their shutdown work.
                faults.close()
