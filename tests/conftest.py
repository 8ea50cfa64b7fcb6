"""Shared fixtures: one clean namespace per test on each real server.

A test that is marked ``mariadb``/``redis``/``etcd``/``kafka``, or that uses one
of the fixtures below, needs that server. The server is probed once per session;
when it does not answer the test is skipped, or FAILS when ``CI`` is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gochat_actors._loop_tuning import tuning_enabled
from tests import _servers
from tests._clusters import (
    EtcdCluster,
    MariaDBTLS,
    RedisCluster,
    RedisSentinel,
    RedisTLS,
    etcd_cluster_running,
    mariadb_tls_running,
    redis_cluster_running,
    redis_sentinel_running,
    redis_tls_running,
)
from tests._private import (
    PrivateServer,
    private_etcd_server,
    private_redis_server,
    private_tansu_server,
)
from tests._servers import Server, TopicFactory, require_server

# fixture name -> the server it needs (used to mark tests automatically).
SERVER_FIXTURES: dict[str, Server] = {
    "mariadb_url": "mariadb",
    "redis_url": "redis",
    "redis_key_prefix": "redis",
    "etcd_url": "etcd",
    "etcd_key_prefix": "etcd",
    "kafka_bootstrap": "kafka",
    "kafka_topic_factory": "kafka",
    "kafka_group_id": "kafka",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the servers its fixtures need (so ``-m "not kafka"`` works).
    With the bridge's tuning off (``GOCHAT_BRIDGE_TUNING=off``), the tests of the tuning
    itself (marked ``bridge_tuning``) are deselected: everything else must pass."""
    if not tuning_enabled():
        tuning = [item for item in items if item.get_closest_marker("bridge_tuning")]
        if tuning:
            config.hook.pytest_deselected(items=tuning)
            items[:] = [item for item in items if item not in tuning]
    for item in items:
        names = getattr(item, "fixturenames", ())
        for server in sorted({SERVER_FIXTURES[n] for n in names if n in SERVER_FIXTURES}):
            if item.get_closest_marker(server) is None:
                item.add_marker(getattr(pytest.mark, server))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Check every server the test is marked for, before its fixtures run."""
    for server in _servers.SERVERS:
        if item.get_closest_marker(server) is not None:
            require_server(server)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """``redis://127.0.0.1:6379/0``; pair it with ``redis_key_prefix``."""
    require_server("redis")
    return _servers.REDIS_URL


@pytest.fixture
def redis_key_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix like ``gochat-test:ab12...:``; its keys are deleted afterwards."""
    prefix = _servers.unique_name("redis", sep=":") + ":"
    yield prefix
    _servers.redis_delete_prefix(prefix)


@pytest.fixture(scope="session")
def etcd_url() -> str:
    """``http://127.0.0.1:2379`` (the v3 JSON gateway); pair it with ``etcd_key_prefix``."""
    require_server("etcd")
    return _servers.ETCD_URL


@pytest.fixture
def etcd_key_prefix(etcd_url: str) -> Iterator[str]:
    """A unique key prefix like ``/gochat-test/etcd/ab12.../``; deleted afterwards."""
    prefix = "/" + _servers.unique_name("etcd", sep="/") + "/"
    yield prefix
    _servers.etcd_delete_prefix(prefix)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``127.0.0.1:9092``, the Kafka-wire broker (Tansu locally)."""
    require_server("kafka")
    return _servers.KAFKA_BOOTSTRAP


@pytest.fixture
def kafka_topic_factory(kafka_bootstrap: str) -> Iterator[TopicFactory]:
    """``factory(stem="topic") -> str``: unique topic names; those topics are deleted after."""
    made: list[str] = []

    def factory(stem: str = "topic") -> str:
        name = _servers.unique_name(stem)
        made.append(name)
        return name

    yield factory
    _servers.kafka_delete_topics(made)


@pytest.fixture
def kafka_group_id(kafka_bootstrap: str) -> str:
    """A unique consumer group id."""
    return _servers.unique_name("group")


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh, empty database, dropped afterwards.

    Yields ``mysql+aiomysql://root@127.0.0.1:3306/gochat_test_db_<hex>``.
    """
    require_server("mariadb")
    database = _servers.unique_name("db", sep="_").replace("-", "_")
    _servers.mariadb_create_database(database)
    yield _servers.mariadb_url(database)
    _servers.mariadb_drop_database(database)


@pytest.fixture
def private_redis() -> Iterator[PrivateServer]:
    """A private redis-server on a free port, to pause or kill (never the shared one)."""
    with private_redis_server() as server:
        yield server


@pytest.fixture
def private_etcd() -> Iterator[PrivateServer]:
    """A private etcd on free ports, to pause or kill (never the shared one)."""
    with private_etcd_server() as server:
        yield server


@pytest.fixture
def private_tansu() -> Iterator[PrivateServer]:
    """A private Tansu broker on a free port (``.address`` is its bootstrap), to pause or
    kill (never the shared one)."""
    with private_tansu_server() as server:
        yield server


# ---- clustered servers (issue 20): private, on free ports; see tests/_clusters.py ----


@pytest.fixture
def etcd_cluster() -> Iterator[EtcdCluster]:
    """Three private etcd members: ``url`` lists them; kill, pause, restart, move the leader."""
    with etcd_cluster_running() as cluster:
        yield cluster


@pytest.fixture
def etcd_auth_cluster() -> Iterator[EtcdCluster]:
    """``etcd_cluster`` with auth enabled: user ``root``, password ``pw``."""
    with etcd_cluster_running(auth=True) as cluster:
        yield cluster


@pytest.fixture
def etcd_tls_cluster() -> Iterator[EtcdCluster]:
    """``etcd_cluster`` on https; ``tls`` has the CA and the (required) client certificate."""
    with etcd_cluster_running(tls=True) as cluster:
        yield cluster


@pytest.fixture
def redis_sentinel() -> Iterator[RedisSentinel]:
    """A private master, replica and 3 sentinels: ``kill_master()``, ``wait_failover()``."""
    with redis_sentinel_running() as setup:
        yield setup


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A private 3-master Redis Cluster, shared by the session: never kill or pause it."""
    with redis_cluster_running() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_tls() -> Iterator[RedisTLS]:
    """A private TLS-only redis-server (client certificate required), shared by the session."""
    with redis_tls_running() as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_tls() -> Iterator[MariaDBTLS]:
    """A private mariadbd with TLS, shared by the session; ``create_database()``, ``url()``."""
    with mariadb_tls_running() as server:
        yield server


# -- spans collected in memory (the OpenTelemetry SDK is imported only by the tests that
# ask for them: importing gochat_actors must not pull it in) -----------------------------
@pytest.fixture
def provider() -> Any:
    """A tracer provider of the test's own (not the global one)."""
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider()


@pytest.fixture
def spans(provider: Any) -> Iterator[Any]:
    """Spans on for the test (``provider``), collected by the SDK's in-memory exporter;
    off afterwards."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gochat_actors import tracing

    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        yield exporter
    finally:
        tracing.disable()
        provider.shutdown()
