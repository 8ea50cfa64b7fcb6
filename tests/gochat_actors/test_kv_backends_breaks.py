"""Adversarial review of the shared key-space factories (``_kv_backends.py``), the shared
Redis opener and Sentinel readiness: cache and lock behave alike, and as before the fold."""

from __future__ import annotations

from typing import Any, cast

import pytest
import trio

from gochat_actors import (
    CacheError,
    CacheUnavailable,
    Dsn,
    LockError,
    LockUnavailable,
)
from gochat_actors._backends import Backends
from gochat_actors._tls import TLSFiles
from gochat_actors.cache._backends import BACKENDS as CACHE
from gochat_actors.lock._backends import BACKENDS as LOCK

SECRET = "hunter2kv"
COMPONENTS = pytest.mark.parametrize(
    ("registry", "error", "unavailable"),
    [(CACHE, CacheError, CacheUnavailable), (LOCK, LockError, LockUnavailable)],
    ids=["cache", "lock"],
)


@COMPONENTS
@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@127.0.0.1:1/0",
        f"redis+cluster://:{SECRET}@127.0.0.1:1,127.0.0.1:2",
        f"rediss+cluster://:{SECRET}@127.0.0.1:1,127.0.0.1:2",
        f"redis+sentinel://:{SECRET}@127.0.0.1:1,127.0.0.1:2/gmaster/0",
    ],
)
async def test_an_unreachable_server_is_the_components_unavailable(
    registry: Backends[Any], error: type[Exception], unavailable: type[Exception], url: str
) -> None:
    dsn = Dsn(url)
    connect = registry.factory(dsn.scheme)(dsn, "p:", 0.5, None)
    with trio.fail_after(10), pytest.raises(unavailable) as caught:
        async with connect() as backend:
            await backend.ping()
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.__cause__)


@COMPONENTS
@pytest.mark.parametrize(
    "url", ["rediss://127.0.0.1:1/0", "rediss+cluster://127.0.0.1:1,127.0.0.1:2"]
)
async def test_a_bad_tls_file_is_the_components_error_before_any_connect(
    registry: Backends[Any], error: type[Exception], unavailable: type[Exception], url: str
) -> None:
    dsn = Dsn(url)
    connect = registry.factory(dsn.scheme)(dsn, "p:", 0.5, None, tls=TLSFiles("/no/such/ca.pem"))
    with pytest.raises(error) as caught:
        async with connect():
            pass
    assert not isinstance(caught.value, unavailable)
    assert "ca_file: no such file" in str(caught.value)


class _Watch:
    def __init__(self, why: str | None) -> None:
        self.why = why
        self.calls = 0

    async def no_master(self) -> str | None:
        await trio.lowlevel.checkpoint()
        self.calls += 1
        return self.why


@pytest.mark.parametrize("component", ["cache", "lock"])
async def test_both_sentinel_backends_report_the_watchs_readiness(component: str) -> None:
    if component == "cache":
        from gochat_actors.cache._sentinel import SentinelCache as Backend
    else:
        from gochat_actors.lock._sentinel import SentinelLockBackend as Backend  # type: ignore[assignment]
    watch = _Watch("Sentinel has no master for 'gmaster'")
    backend = Backend(cast(Any, object()), cast(Any, watch), key_prefix="p:")
    assert await backend.not_ready() == "Sentinel has no master for 'gmaster'"
    watch.why = None
    assert await backend.not_ready() is None
    assert watch.calls == 2
