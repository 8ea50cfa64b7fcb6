"""The test-server helpers themselves: namespaces, cleanup, and skip-or-fail."""

from __future__ import annotations

import pytest

from tests import _servers


def test_unique_names_differ() -> None:
    """Two calls never give the same name, and the stem is kept."""
    a, b = _servers.unique_name("orders"), _servers.unique_name("orders")
    assert a != b
    assert a.startswith("gochat-test-orders-")


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_server_fails_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    """With CI set, a server that did not answer fails the test."""
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(_servers, "unavailable_reason", lambda server: f"{server} is down")
    with pytest.raises(pytest.fail.Exception, match=r"kafka is down.*CI is set"):
        _servers.require_server("kafka")


@pytest.mark.parametrize("ci", ["", "false", "0"])
def test_missing_server_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    """Without CI, a server that did not answer skips the test, saying why."""
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(_servers, "unavailable_reason", lambda server: f"{server} is down")
    with pytest.raises(pytest.skip.Exception, match="etcd is down"):
        _servers.require_server("etcd")


def test_probe_of_a_closed_port_gives_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused connection is reported with the address and the hint to start it."""
    monkeypatch.setattr(_servers, "REDIS_PORT", 1)  # nothing listens on port 1
    _servers.unavailable_reason.cache_clear()
    try:
        reason = _servers.unavailable_reason("redis")
    finally:
        _servers.unavailable_reason.cache_clear()
    assert reason is not None
    assert "scripts/services up" in reason


def test_redis_prefix_cleanup(redis_key_prefix: str) -> None:
    """Keys under the prefix are deleted; a key outside it is not."""
    outside = redis_key_prefix.rstrip(":") + "-outside"
    conn = _servers._Resp()
    try:
        for i in range(3):
            assert conn.call("SET", f"{redis_key_prefix}k{i}", "v") == b"OK"
        assert conn.call("SET", outside, "v", "EX", "60") == b"OK"
        assert _servers.redis_delete_prefix(redis_key_prefix) == 3
        assert conn.call("EXISTS", outside) == 1
        assert conn.call("DEL", outside) == 1
    finally:
        conn.close()


def test_etcd_prefix_cleanup(etcd_key_prefix: str) -> None:
    """Keys under the prefix are deleted, and only those."""
    for i in range(3):
        _servers.etcd_post(
            "/v3/kv/put",
            {"key": _servers._b64(f"{etcd_key_prefix}k{i}".encode()), "value": _servers._b64(b"v")},
        )
    assert _servers.etcd_delete_prefix(etcd_key_prefix) == 3
    assert _servers.etcd_delete_prefix(etcd_key_prefix) == 0


def test_kafka_delete_of_unknown_topic_is_fine(kafka_topic_factory: _servers.TopicFactory) -> None:
    """Deleting names that were never created (UNKNOWN_TOPIC_OR_PARTITION) does not raise."""
    _servers.kafka_delete_topics([kafka_topic_factory("never-created")])


def test_mariadb_database_is_fresh(mariadb_url: str) -> None:
    """The fixture's database exists and is empty."""
    import pymysql

    database = mariadb_url.rsplit("/", 1)[1]
    conn = pymysql.connect(host=_servers.HOST, port=_servers.MARIADB_PORT, user="root")
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s",
                (database,),
            )
            assert cur.fetchone() == (0,)
            cur.execute("SHOW DATABASES LIKE %s", (database,))
            assert cur.fetchone() == (database,)
    finally:
        conn.close()
