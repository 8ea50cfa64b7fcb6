"""The etcd conformance suite, unchanged, on every backend of idgen's registry (real etcd
over HTTP and MemoryEtcd), each built by its registered factory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from gochat_actors import Dsn, IdGenUnavailable
from gochat_actors.idgen import EtcdBackend, MemoryEtcd
from gochat_actors.idgen._backends import BACKENDS
from gochat_actors.idgen._etcd import HttpEtcd
from gochat_actors.testing import IDGEN_CHECKS, check_idgen_backend

Check = Callable[[EtcdBackend], Awaitable[None]]

HTTP_TIMEOUT = 5.0  # HttpEtcd's own default


CHECKED = {"http", "memory"}
"""The backends (by first scheme) whose conformance tests are below."""


def test_every_registered_backend_runs_the_suite() -> None:
    """A backend added to the registry fails here until it gets its conformance run."""
    assert set(BACKENDS.kinds()) == CHECKED


@pytest.mark.parametrize("check", IDGEN_CHECKS, ids=lambda c: c.__name__)
async def test_real_etcd(check: Check, etcd_url: str) -> None:
    backend = BACKENDS.factory("http")(Dsn(etcd_url), HTTP_TIMEOUT)
    try:
        await check(backend)
    finally:
        await backend.aclose()


@pytest.mark.parametrize("check", IDGEN_CHECKS, ids=lambda c: c.__name__)
async def test_memory_etcd(check: Check, autojump_clock: trio.abc.Clock) -> None:
    await check(BACKENDS.factory("memory")(Dsn("memory://"), 1.0))


async def test_whole_suite_runner(autojump_clock: trio.abc.Clock) -> None:
    store = MemoryEtcd()
    await check_idgen_backend(lambda: store)
    assert store.calls > 30


async def test_unreachable_etcd_is_idgen_unavailable_with_the_cause() -> None:
    backend = HttpEtcd("http://127.0.0.1:9", timeout=2.0)
    try:
        with pytest.raises(IdGenUnavailable, match="server unreachable") as info:
            await backend.lease_grant(5)
    finally:
        await backend.aclose()
    assert type(info.value.__cause__).__module__.startswith("httpx")
    assert repr(backend) == "<HttpEtcd http://127.0.0.1:9>"


async def test_an_error_reply_is_translated(etcd_url: str) -> None:
    backend = HttpEtcd(etcd_url)
    try:
        with pytest.raises(IdGenUnavailable, match="refused"):
            await backend.range(b"")  # etcd: "key is not provided"
    finally:
        await backend.aclose()


def test_error_replies_map_to_our_exceptions() -> None:
    from gochat_actors import MachineIdLost
    from gochat_actors.idgen._errors import loads, reply_error

    streamed = {"error": {"grpc_code": 5, "message": "etcdserver: requested lease not found"}}
    assert isinstance(reply_error(200, streamed, "keepalive"), MachineIdLost)
    refused = reply_error(400, {"code": 3, "message": "etcdserver: key is not provided"}, "put")
    assert isinstance(refused, IdGenUnavailable)
    assert "key is not provided" in str(refused)
    assert reply_error(200, {"header": {}}, "range") is None
    assert loads(b'{"result": {"TTL": "2"}}\n{"result": {}}\n') == {"result": {"TTL": "2"}}
    assert loads(b"") == {}
    with pytest.raises(ValueError, match="JSON object"):
        loads(b"[1]")


# -- issue 28: the suite rejects a backend that keeps leases too short -------------------
class HalfTtlEtcd(MemoryEtcd):
    """Grants and keeps leases alive for half the TTL it reports: two generators would
    hold one machine ID at once."""

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        lease, granted = await super().lease_grant(ttl)
        self._leases[lease].expires_at -= granted / 2
        return lease, granted

    async def lease_keepalive(self, lease: int) -> int | None:
        granted = await super().lease_keepalive(lease)
        if granted is not None:
            self._leases[lease].expires_at -= granted / 2
        return granted


async def test_the_suite_rejects_a_backend_keeping_leases_half_their_ttl(
    autojump_clock: trio.abc.Clock,
) -> None:
    etcd = HalfTtlEtcd()
    with pytest.raises(AssertionError, match=r"lost its key after 1\.6s"):
        await check_idgen_backend(lambda: etcd)
