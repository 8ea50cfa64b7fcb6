"""The cache and the locks over TLS (``rediss://`` with ``ca_file``, ``cert_file``,
``key_file``) against a private TLS-only redis-server that requires a client certificate;
certificates are made by the test fixtures (trustme), never committed."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from gochat_actors import CacheError, CacheUnavailable
from gochat_actors._tls import TLSFiles
from gochat_actors.cache import Cache, CacheSettings, open_redis_cache
from gochat_actors.lock import Locks, LockSettings
from supervisors import open_supervisor
from tests._clusters import RedisTLS, make_tls_files


def files_of(server: RedisTLS) -> dict[str, str]:
    tls = server.tls
    return {
        "ca_file": str(tls.ca),
        "cert_file": str(tls.client_cert),
        "key_file": str(tls.client_key),
    }


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and its causes and contexts."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


async def test_a_cache_round_trip_over_tls(redis_tls: RedisTLS) -> None:
    cache = Cache(
        CacheSettings.model_validate(
            {"url": redis_tls.url(), "key_prefix": "tls:", **files_of(redis_tls)}
        )
    )
    async with open_supervisor([cache.spec()]):
        await cache.set("user:1", b"ann", ttl=60.0)
        assert await cache.get("user:1") == b"ann"
        assert await cache.mget(["user:1", "nobody"]) == [b"ann", None]
        assert await cache.delete("user:1") == 1


async def test_a_lock_over_tls_with_the_caches_files(redis_tls: RedisTLS) -> None:
    """An empty ``[lock] url`` uses the cache's url and its TLS files."""
    cache = CacheSettings.model_validate(
        {"url": redis_tls.url(), "key_prefix": "tls-lock:", **files_of(redis_tls)}
    )
    locks = Locks(LockSettings(), cache_settings=cache)
    async with open_supervisor([locks.spec()]):
        async with locks.hold("room:1", ttl=10.0, wait=5.0) as first:
            pass
        async with locks.hold("room:1", ttl=10.0, wait=5.0) as second:
            pass
    assert second.token == first.token + 1


async def test_a_lock_over_tls_with_its_own_url_and_files(redis_tls: RedisTLS) -> None:
    settings = LockSettings.model_validate({"url": redis_tls.url(), **files_of(redis_tls)})
    locks = Locks(settings, cache_settings=CacheSettings(key_prefix="tls-own:"))
    async with (
        open_supervisor([locks.spec()]),
        locks.hold("room:2", ttl=10.0, wait=5.0) as lease,
    ):
        assert lease.token >= 1


async def test_without_the_client_certificate_the_server_refuses(redis_tls: RedisTLS) -> None:
    tls = TLSFiles(ca_file=str(redis_tls.tls.ca))
    async with open_redis_cache(redis_tls.url(), tls=tls) as backend:
        with pytest.raises(CacheUnavailable):
            await backend.ping()


async def test_a_server_certificate_from_another_ca_is_refused(
    redis_tls: RedisTLS, tmp_path: Path
) -> None:
    other = make_tls_files(tmp_path / "other")
    tls = TLSFiles(str(other.ca), str(redis_tls.tls.client_cert), str(redis_tls.tls.client_key))
    async with open_redis_cache(redis_tls.url(), tls=tls) as backend:
        with pytest.raises(CacheUnavailable) as caught:
            await backend.ping()
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in causes(caught.value))


async def test_a_file_gone_since_the_settings_loaded_is_a_cache_error(
    redis_tls: RedisTLS, tmp_path: Path
) -> None:
    tls = TLSFiles(ca_file=str(tmp_path / "gone.pem"))
    with pytest.raises(CacheError, match="ca_file: no such file"):
        async with open_redis_cache(redis_tls.url(), tls=tls):
            pass
