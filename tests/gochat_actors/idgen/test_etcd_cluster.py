"""Generators on a real 3-member etcd cluster (issue 20): the leader killed, a member
paused, no quorum; etcd with auth; etcd over TLS. The clusters are private (free ports),
started and stopped by the fixtures of ``tests/_clusters.py``.

Each failover test prints what it measured (``pytest -s`` shows it); docs/deployment.md
keeps the figures.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import structlog
import trio

from gochat_actors import IdGenAuthFailed, IdGenUnavailable, MachineIdLost
from gochat_actors.http import HTTPEndpoints, HTTPSettings
from gochat_actors.idgen import EtcdBackend, IdGenerator, IdGenSettings
from gochat_actors.idgen._backends import BACKENDS, EtcdOptions
from gochat_actors.idgen._cluster import ClusterEtcd
from gochat_actors.idgen._etcd import HttpEtcd
from gochat_actors.metrics import Metrics
from gochat_actors.testing import check_idgen_backend
from supervisors import ChildStartError, open_supervisor
from tests._clusters import EtcdCluster, etcd_cluster_running

pytestmark = pytest.mark.etcd


def report(what: str, **figures: float | str) -> None:
    """Print a measured figure (shown with ``pytest -s``)."""
    text = ", ".join(
        f"{k}={v:.3f}s" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
    )
    print(f"\n[etcd-cluster] {what}: {text}", file=sys.stderr)


@dataclass
class Issuer:
    """Issues IDs every few milliseconds and records the longest time without one."""

    ids: IdGenerator
    issued: list[int] = field(default_factory=list)
    last_ok: float = 0.0
    longest_gap: float = 0.0
    gap_after: float = 0.0  # only gaps ending after this monotonic instant count
    failures: int = 0

    async def run(self, stop: trio.Event) -> None:
        self.last_ok = time.monotonic()
        while not stop.is_set():
            try:
                batch = self.ids.next_ids(10)
            except MachineIdLost:
                self.failures += 1
            else:
                now = time.monotonic()
                if now > self.gap_after:
                    self.longest_gap = max(self.longest_gap, now - self.last_ok)
                self.last_ok = now
                self.issued += batch
            await trio.sleep(0.005)

    def check_unique_and_one_machine(self, machine_id: int | None) -> None:
        assert len(set(self.issued)) == len(self.issued), "a duplicate ID"
        assert all(a < b for a, b in itertools.pairwise(self.issued))
        machines = {self.ids.parse(i).machine_id for i in self.issued}
        assert machines == {machine_id}


async def blocking(fn: Callable[[], object]) -> None:
    """Run a blocking cluster helper (etcdctl, kill) without stopping the trio loop."""
    await trio.to_thread.run_sync(fn)


async def wait_renewals(ids: IdGenerator, count: int, timeout: float) -> None:
    target = ids.statistics().renewals + count
    with trio.fail_after(timeout):
        while ids.statistics().renewals < target:  # noqa: ASYNC110 (a counter)
            await trio.sleep(0.05)


async def first_write_after(etcd: EtcdBackend, since: float) -> float:
    """Put until one succeeds; the seconds from ``since`` (the election, seen by a
    client: a follower holds a write until there is a leader again)."""
    with trio.fail_after(60):
        while True:
            try:
                await etcd.put(b"/gochat-test/ha-probe", b"x")
            except IdGenUnavailable:
                await trio.sleep(0.01)
                continue
            return time.monotonic() - since


async def readyz_until(
    client: httpx.AsyncClient, done: Callable[[httpx.Response], bool], timeout: float
) -> httpx.Response:
    """Poll /readyz until ``done`` says yes; that reply."""
    with trio.fail_after(timeout):
        while not done(reply := await client.get("/readyz")):  # noqa: ASYNC110 (a server)
            await trio.sleep(0.1)
    return reply


def cluster_settings(cluster: EtcdCluster, **overrides: object) -> IdGenSettings:
    values: dict[str, object] = {"etcd": cluster.url, "key_prefix": "/gochat-test/ha/"}
    values.update(overrides)
    return IdGenSettings.model_validate(values)


async def test_leader_killed_while_issuing(etcd_cluster: EtcdCluster) -> None:
    """SIGKILL the leader, which is also the member the client talks to first: no
    duplicate, the same machine ID, and issuing never stops for ``lease_ttl - margin``."""
    first = etcd_cluster.members[0]
    etcd_cluster.move_leader(first)
    settings = cluster_settings(etcd_cluster)  # lease_ttl 10, margin 2: the defaults
    ids = IdGenerator(settings)
    issuer = Issuer(ids)
    async with open_supervisor([ids.spec()]), trio.open_nursery() as nursery:
        machine_id = ids.machine_id
        stop = trio.Event()
        nursery.start_soon(issuer.run, stop)
        await wait_renewals(ids, 1, 30)
        probe = BACKENDS.factory("http")(settings.etcd, 1.0)  # a second client, to time
        try:
            killed_at = time.monotonic()
            issuer.gap_after = killed_at
            with structlog.testing.capture_logs() as logs:
                await blocking(lambda: etcd_cluster.kill(first))
                writes_after = await first_write_after(probe, killed_at)
                # Renewals go on against the two others, across the election: three.
                renewals = ids.statistics().renewals
                await wait_renewals(ids, 3, 60)
        finally:
            await probe.aclose()
        moved = [e for e in logs if e["event"] == "idgen.etcd_failover"]
        assert {e["previous"] for e in moved} == {first.url}  # the probe's and the keeper's
        new_leader = await trio.to_thread.run_sync(
            lambda: etcd_cluster.wait_leader(other_than=first)
        )
        stop.set()
    stats = ids.statistics()
    report(
        "leader killed",
        writes_resumed_after=writes_after,
        longest_gap_without_ids=issuer.longest_gap,
        failed_next_ids=issuer.failures,
        renewal_failures=stats.renewal_failures,
        renewals_after=stats.renewals - renewals,
        new_leader=new_leader.name,
    )
    issuer.check_unique_and_one_machine(machine_id)
    assert stats.acquisitions == 1  # never lost, never claimed again
    assert issuer.longest_gap < settings.lease_ttl - settings.margin


async def test_a_paused_member_stalls_issuing_at_most_one_request_timeout(
    etcd_cluster: EtcdCluster,
) -> None:
    """SIGSTOP the member the client talks to (not the leader: no election): its
    requests hang; the client moves on after one request timeout."""
    first, second = etcd_cluster.members[0], etcd_cluster.members[1]
    etcd_cluster.move_leader(second)
    settings = cluster_settings(etcd_cluster, lease_ttl=6.0, margin=1.5)
    ids = IdGenerator(settings)
    request_timeout = ids.request_timeout
    issuer = Issuer(ids)
    async with open_supervisor([ids.spec()]), trio.open_nursery() as nursery:
        machine_id = ids.machine_id
        stop = trio.Event()
        nursery.start_soon(issuer.run, stop)
        await wait_renewals(ids, 1, 30)
        issuer.gap_after = time.monotonic()
        etcd_cluster.pause(first)
        try:
            with structlog.testing.capture_logs() as logs:
                await wait_renewals(ids, 3, 60)
        finally:
            etcd_cluster.resume(first)
        stop.set()
    [failover] = [e for e in logs if e["event"] == "idgen.etcd_failover"]
    assert failover["previous"] == first.url
    assert failover["previous_error"].startswith("no reply within")
    stats = ids.statistics()
    report(
        "member paused",
        request_timeout=request_timeout,
        longest_gap_without_ids=issuer.longest_gap,
        failed_next_ids=issuer.failures,
        renewal_failures=stats.renewal_failures,
    )
    issuer.check_unique_and_one_machine(machine_id)
    assert stats.acquisitions == 1
    assert issuer.failures == 0
    assert issuer.longest_gap <= request_timeout


async def test_readyz_is_503_without_quorum_and_recovers_by_itself(
    etcd_cluster: EtcdCluster,
) -> None:
    """Two of three members killed: no quorum, leases cannot be kept. /readyz says so
    with the reason, and is ready again once the members are back (no restart)."""
    settings = cluster_settings(etcd_cluster, lease_ttl=4.0, margin=1.0)
    ids = IdGenerator(settings)
    endpoints = HTTPEndpoints(HTTPSettings(port=0), metrics=Metrics())
    children = [endpoints.spec(shutdown=2.0), ids.spec()]
    async with (
        open_supervisor(children),
        httpx.AsyncClient(base_url=str(endpoints.url), timeout=10.0) as client,
    ):
        assert (await client.get("/readyz")).status_code == 200
        machine_id = ids.machine_id
        down = etcd_cluster.members[1:]
        for member in down:
            await blocking(lambda m=member: etcd_cluster.kill(m))  # type: ignore[misc]
        lost_at = time.monotonic()
        reply = await readyz_until(client, lambda r: r.status_code == 503, 30)
        not_ready_after = time.monotonic() - lost_at
        reasons = reply.json()["reasons"]
        assert any(r.startswith("idgen: failed (") for r in reasons), reasons
        with pytest.raises(MachineIdLost):
            ids.next_id()
        # in time the reason names every member's failure
        reply = await readyz_until(client, lambda r: "members answered" in r.text, 30)
        assert reply.status_code == 503
        for member in down:
            await blocking(lambda m=member: etcd_cluster.restart(m))  # type: ignore[misc]
        back_at = time.monotonic()
        await readyz_until(client, lambda r: r.status_code == 200, 60)
        ready_after = time.monotonic() - back_at
        ids.next_id()
        assert ids.machine_id == machine_id  # the lease outlived the outage
        assert ids.statistics().acquisitions == 1
    report(
        "quorum lost and back",
        not_ready_after=not_ready_after,
        ready_again_after_quorum=ready_after,
    )


async def test_auth_enabled_cluster(etcd_auth_cluster: EtcdCluster) -> None:
    cluster = etcd_auth_cluster
    settings = cluster_settings(
        cluster, etcd_user=cluster.user, etcd_password=cluster.password, lease_ttl=3.0, margin=0.75
    )
    ids = IdGenerator(settings)
    async with open_supervisor([ids.spec()]):
        first = ids.next_ids(100)
        await wait_renewals(ids, 2, 30)
        assert ids.next_id() > first[-1]
        assert ids.statistics().acquisitions == 1

    wrong = cluster_settings(cluster, etcd_user=cluster.user, etcd_password="not-the-password")
    with pytest.raises(ChildStartError) as info:
        async with open_supervisor([IdGenerator(wrong).spec()]):
            pass  # pragma: no cover
    cause = info.value.__cause__
    assert isinstance(cause, IdGenAuthFailed)
    assert "authentication failed" in str(cause)
    assert "etcd_user" in str(cause)
    assert "not-the-password" not in str(cause)

    anonymous = cluster_settings(cluster)
    with pytest.raises(ChildStartError) as info:
        async with open_supervisor([IdGenerator(anonymous).spec()]):
            pass  # pragma: no cover
    assert isinstance(info.value.__cause__, IdGenAuthFailed)
    assert "set [idgen] etcd_user" in str(info.value.__cause__)


@pytest.fixture
def short_token_cluster() -> Iterator[EtcdCluster]:
    """``etcd_auth_cluster`` whose simple tokens expire after 1 s without use."""
    with etcd_cluster_running(auth=True, auth_token_ttl=1) as cluster:
        yield cluster


async def test_an_expired_token_is_renewed(short_token_cluster: EtcdCluster) -> None:
    """Tokens idle for 1 s expire; renewals run every 2 s: each finds its token expired
    ("invalid auth token"), authenticates again and goes on, under the same lease."""
    cluster = short_token_cluster
    settings = cluster_settings(
        cluster, etcd_user=cluster.user, etcd_password=cluster.password, lease_ttl=6.0, margin=1.5
    )
    url = settings.etcd
    backend = BACKENDS.factory(url.scheme)(url, 1.0, EtcdOptions.from_settings(settings))
    assert isinstance(backend, ClusterEtcd)
    first = backend._members[0].backend
    assert isinstance(first, HttpEtcd)
    ids = IdGenerator(settings, backend=backend)
    try:
        async with open_supervisor([ids.spec()]):
            await trio.sleep(1.5)  # more than the tokens' TTL, less than the lease's margin
            await wait_renewals(ids, 3, 30)
            ids.next_id()
            stats = ids.statistics()
    finally:
        await backend.aclose()
    report("expiring tokens", authentications=str(first.authentications))
    assert first.authentications >= 2
    assert backend.current == backend.members[0]  # renewed on the same member
    assert stats.acquisitions == 1
    assert stats.renewal_failures == 0


async def test_tls_cluster(etcd_tls_cluster: EtcdCluster) -> None:
    cluster = etcd_tls_cluster
    tls = cluster.tls
    assert tls is not None
    assert cluster.url.startswith("https://")
    settings = cluster_settings(
        cluster,
        etcd_ca_file=str(tls.ca),
        etcd_cert_file=str(tls.client_cert),
        etcd_key_file=str(tls.client_key),
        lease_ttl=3.0,
        margin=0.75,
    )
    ids = IdGenerator(settings)
    async with open_supervisor([ids.spec()]):
        ids.next_ids(100)
        await wait_renewals(ids, 2, 30)
        assert ids.statistics().acquisitions == 1

    untrusted = cluster_settings(cluster, lease_ttl=3.0, margin=0.75)  # system CAs only
    with pytest.raises(ChildStartError) as info:
        async with open_supervisor([IdGenerator(untrusted).spec()]):
            pass  # pragma: no cover
    assert "TLS handshake: [SSL: CERTIFICATE_VERIFY_FAILED]" in str(info.value.__cause__)


async def test_the_conformance_suite_on_the_cluster_with_its_first_member_killed(
    etcd_cluster: EtcdCluster,
) -> None:
    """Every etcd operation of the keeper, through the member list, while the first
    member listed is dead: each request moves on to a live one."""
    etcd_cluster.kill(etcd_cluster.members[0])
    url = IdGenSettings.model_validate({"etcd": etcd_cluster.url}).etcd
    await check_idgen_backend(lambda: BACKENDS.factory("http")(url, 5.0))
