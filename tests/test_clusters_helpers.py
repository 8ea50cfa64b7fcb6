"""The cluster fixtures themselves (tests/_clusters.py): each starts and answers, its
fault helpers do what they say, and nothing it started outlives it."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests import _clusters
from tests._clusters import (
    ClusterTimeout,
    EtcdCluster,
    EtcdctlError,
    MariaDBTLS,
    RedisCluster,
    RedisConnection,
    RedisSentinel,
    RedisTLS,
    redis_call,
)
from tests._servers import HOST


def _gone(pid: int) -> bool:
    """The process is reaped (a recycled pid would be some other program: not ours)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return not any(name in cmdline for name in (b"etcd", b"redis", b"mariadbd"))


# ---- etcd -----------------------------------------------------------------


@pytest.mark.slow
def test_etcd_leader_moves_and_a_killed_leader_is_replaced(etcd_cluster: EtcdCluster) -> None:
    """move_leader picks the leader; after SIGKILL of it the others elect one and take
    writes; restart brings the member back healthy."""
    first = etcd_cluster.leader()
    target = next(m for m in etcd_cluster.members if m is not first)
    etcd_cluster.move_leader(target)
    assert etcd_cluster.leader() is target

    etcd_cluster.kill(target)
    assert not target.running
    successor = etcd_cluster.wait_leader(other_than=target)
    assert successor is not target
    survivors = [m for m in etcd_cluster.members if m.running]
    etcd_cluster.etcdctl("put", "gochat-test/after-kill", "v", members=survivors)

    etcd_cluster.restart(target)
    assert etcd_cluster.healthy()
    assert "v" in etcd_cluster.etcdctl("get", "gochat-test/after-kill", members=[target])


@pytest.mark.slow
def test_etcd_paused_member(etcd_cluster: EtcdCluster) -> None:
    """A paused follower is unhealthy while the two others still take writes; a paused
    leader is replaced; both are healthy again once resumed."""
    leader = etcd_cluster.leader()
    follower = next(m for m in etcd_cluster.members if m is not leader)
    etcd_cluster.pause(follower)
    assert not etcd_cluster.healthy([follower])
    etcd_cluster.etcdctl("put", "gochat-test/paused", "1", members=[leader])
    etcd_cluster.resume(follower)

    etcd_cluster.pause(leader)
    assert etcd_cluster.wait_leader(other_than=leader) is not leader
    etcd_cluster.resume(leader)
    _clusters.wait_until("all healthy", etcd_cluster.healthy, 15.0, etcd_cluster.members)


@pytest.mark.slow
def test_etcd_auth_cluster(etcd_auth_cluster: EtcdCluster) -> None:
    """With auth on, root's password works; none, or a wrong one, is refused."""
    assert etcd_auth_cluster.user == "root"
    etcd_auth_cluster.etcdctl("put", "gochat-test/auth", "v")
    etcd_auth_cluster.user = ""
    with pytest.raises(EtcdctlError, match="user name is empty"):
        etcd_auth_cluster.etcdctl("put", "gochat-test/auth", "v")
    etcd_auth_cluster.user, etcd_auth_cluster.password = "root", "wrong"
    with pytest.raises(EtcdctlError, match="authentication failed"):
        etcd_auth_cluster.etcdctl("put", "gochat-test/auth", "v")


@pytest.mark.slow
def test_etcd_tls_cluster(etcd_tls_cluster: EtcdCluster) -> None:
    """The members speak https only, and want the client certificate."""
    tls = etcd_tls_cluster.tls
    assert tls is not None
    assert all(url.startswith("https://127.0.0.1:") for url in etcd_tls_cluster.urls)
    etcd_tls_cluster.etcdctl("put", "gochat-test/tls", "v")
    health = etcd_tls_cluster.urls[0] + "/health"
    with urllib.request.urlopen(health, context=tls.client_context(), timeout=5) as resp:
        assert b'"health":"true"' in resp.read()
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        # no client certificate: the handshake (or the first read) is refused
        urllib.request.urlopen(health, context=tls.client_context(with_cert=False), timeout=5)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(health.replace("https://", "http://"), timeout=5)


# ---- Redis ----------------------------------------------------------------


@pytest.mark.slow
def test_redis_sentinel_failover(redis_sentinel: RedisSentinel) -> None:
    """After SIGKILL of the master the sentinels promote the replica, which holds what
    reached it and accepts writes."""
    old = redis_sentinel.master_address()
    assert redis_sentinel.master().address == old
    with RedisConnection(old) as conn:
        assert conn.call("SET", "gochat-test:before", "1") == b"OK"
        assert conn.call("WAIT", "1", "5000") == 1  # the replica has it

    killed = redis_sentinel.kill_master()
    assert not killed.running
    new = redis_sentinel.wait_failover(timeout=30)
    assert new != old
    assert redis_sentinel.master_address() == new
    assert redis_call(new, "GET", "gochat-test:before") == b"1", redis_sentinel.logs()
    assert redis_call(new, "SET", "gochat-test:after", "2") == b"OK"
    assert redis_sentinel.url().startswith("redis+sentinel://127.0.0.1:")
    assert redis_sentinel.url().endswith("/gmaster/0")


@pytest.mark.slow
def test_redis_cluster_covers_every_slot(redis_cluster: RedisCluster) -> None:
    """Every node is a master with slots; a key is served by its slot's owner only."""
    assert redis_cluster.state_ok()
    ranges = _slot_ranges(redis_cluster.addresses[0])
    assert {owner for _, _, owner in ranges} == set(redis_cluster.addresses)
    assert sum(end - start + 1 for start, end, _ in ranges) == 16384

    key = "gochat-test:{slot}:k"
    slot = redis_call(redis_cluster.addresses[0], "CLUSTER", "KEYSLOT", key)
    assert isinstance(slot, int)
    owner = next(owner for start, end, owner in ranges if start <= slot <= end)
    assert redis_call(owner, "SET", key, "v", "EX", "60") == b"OK"
    other = next(a for a in redis_cluster.addresses if a != owner)
    with pytest.raises(RuntimeError, match="MOVED"):
        redis_call(other, "GET", key)
    assert redis_call(owner, "DEL", key) == 1


def _slot_ranges(address: str) -> list[tuple[int, int, str]]:
    """``CLUSTER SLOTS`` as (first slot, last slot, owner's host:port)."""
    reply = redis_call(address, "CLUSTER", "SLOTS")
    assert isinstance(reply, list)
    ranges = []
    for entry in reply:
        assert isinstance(entry, list)
        start, end, owner = entry[0], entry[1], entry[2]
        assert isinstance(start, int)
        assert isinstance(end, int)
        assert isinstance(owner, list)
        assert isinstance(owner[0], bytes)
        ranges.append((start, end, f"{owner[0].decode()}:{owner[1]!s}"))
    return ranges


@pytest.mark.slow
def test_redis_tls(redis_tls: RedisTLS) -> None:
    """Round trip over TLS; a plain connection and one without a client certificate fail."""
    assert redis_tls.url().startswith("rediss://127.0.0.1:")
    assert redis_tls.call("SET", "gochat-test:tls", "v", "EX", "60") == b"OK"
    assert redis_tls.call("GET", "gochat-test:tls") == b"v"
    with pytest.raises((OSError, RuntimeError)):  # plain text on the TLS port: no PONG
        redis_call(redis_tls.address, "PING")
    with pytest.raises((ssl.SSLError, OSError)):
        redis_call(redis_tls.address, "PING", tls=redis_tls.tls.client_context(with_cert=False))


@pytest.mark.slow
def test_mariadb_tls(mariadb_tls: MariaDBTLS) -> None:
    """TLS connection, a transaction on a fresh database; the same user in plain text is
    refused (REQUIRE SSL)."""
    assert mariadb_tls.cipher()
    database = mariadb_tls.create_database()
    assert f"/{database}?ssl_ca=" in mariadb_tls.url(database)
    conn = mariadb_tls.connect_tls(database)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
            conn.begin()
            cur.execute("INSERT INTO t VALUES (1), (2)")
            conn.commit()
            cur.execute("SELECT COUNT(*) FROM t")
            assert cur.fetchone() == (2,)
    finally:
        conn.close()
    with pytest.raises(pymysql.err.OperationalError, match="1045"):
        pymysql.connect(
            host=HOST,
            port=mariadb_tls.port,
            user=mariadb_tls.user,
            password=mariadb_tls.password,
            ssl_disabled=True,
            connect_timeout=5,
        )


# ---- teardown: exactly the recorded pids, always ---------------------------

RUNNERS: dict[str, Callable[[], contextlib.AbstractContextManager[Any]]] = {
    "etcd": _clusters.etcd_cluster_running,
    "etcd-auth": lambda: _clusters.etcd_cluster_running(auth=True),
    "etcd-tls": lambda: _clusters.etcd_cluster_running(tls=True),
    "sentinel": _clusters.redis_sentinel_running,
    "cluster": _clusters.redis_cluster_running,
    "redis-tls": _clusters.redis_tls_running,
    "mariadb-tls": _clusters.mariadb_tls_running,
}


class _TestFailed(Exception):
    """What the test body raises: the context manager must still clean up."""


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(RUNNERS))
def test_nothing_outlives_a_failed_test(kind: str) -> None:
    """A test that fails with a node paused (and, for etcd, one restarted): every pid
    recorded is gone afterwards, and the temporary folder too."""
    seen: dict[str, Any] = {}
    with pytest.raises(_TestFailed), RUNNERS[kind]() as running:
        _pause_one_and_fail(running, seen)
    pids: list[int] = seen["pids"]
    folders: set[Path] = seen["folders"]
    assert pids
    assert len(pids) == len(set(pids))
    assert [p for p in pids if not _gone(p)] == []
    assert folders
    assert [f for f in folders if f.exists()] == []


def _pause_one_and_fail(running: Any, seen: dict[str, Any]) -> None:
    """Restart an etcd member (a second pid), pause a node, note the pids and folders,
    and fail."""
    if isinstance(running, EtcdCluster):
        running.restart(running.members[0])
    nodes = _nodes_of(running)
    if nodes:
        nodes[-1].pause()
    seen["pids"] = list(running.pids)
    seen["folders"] = {n.log.parent for n in nodes}
    if isinstance(running, MariaDBTLS):
        seen["folders"].add(running.server.datadir.parent)
    raise _TestFailed


def _nodes_of(running: Any) -> list[_clusters.Node]:
    if isinstance(running, EtcdCluster):
        return list(running.members)
    if isinstance(running, RedisSentinel):
        return [*running.servers, *running.sentinels]
    if isinstance(running, RedisCluster):
        return list(running.nodes)
    if isinstance(running, RedisTLS):
        return [running.node]
    return []


@pytest.mark.slow
def test_a_helper_timeout_in_the_test_stays_a_cluster_timeout() -> None:
    """A ClusterTimeout raised by the test body is not turned into "did not come up"."""
    with pytest.raises(ClusterTimeout, match="mine"), _clusters.redis_tls_running():
        raise ClusterTimeout("mine")


# ---- missing binaries -----------------------------------------------------


@pytest.mark.parametrize(
    "runner", [_clusters.etcd_cluster_running, _clusters.redis_sentinel_running]
)
def test_missing_binary_skips_locally_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, runner: Callable[[], Any]
) -> None:
    """Without the server on PATH: skipped locally, a failure when CI is set."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="not installed"), runner():
        pass
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"), runner():
        pass


def test_stop_process_resumes_a_paused_process() -> None:
    """A SIGSTOPped process still ends at once (SIGCONT before SIGTERM)."""
    process = subprocess.Popen(["sleep", "60"])
    os.kill(process.pid, signal.SIGSTOP)
    _clusters.stop_process(process, grace=30)
    assert process.returncode == -15  # SIGTERM, not the SIGKILL after the grace
