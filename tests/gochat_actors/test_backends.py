"""The per-component backend registry: scheme -> factory, and the settings check it drives."""

from __future__ import annotations

import re
from typing import Annotated

import pytest
from pydantic import BaseModel, ValidationError

from gochat_actors import Dsn
from gochat_actors._backends import Backends
from gochat_actors.cache._backends import BACKENDS as CACHE_BACKENDS
from gochat_actors.config import CacheSettings, IdGenSettings, LockSettings
from gochat_actors.idgen._backends import BACKENDS as IDGEN_BACKENDS
from gochat_actors.lock._backends import BACKENDS as LOCK_BACKENDS
from gochat_actors.mq import MQSettings
from gochat_actors.mq._backends import BACKENDS as MQ_BACKENDS


def test_a_factory_is_found_by_any_of_its_schemes() -> None:
    registry: Backends[str] = Backends("thing")
    registry.add("net", "tcp", "tls")
    registry.add("mem", "memory")
    assert registry.schemes == ("tcp", "tls", "memory")
    assert registry.kinds() == {"tcp": ("tcp", "tls"), "memory": ("memory",)}
    assert registry.factory("tls") == "net"
    with pytest.raises(ValueError, match=r"thing: no backend for udp:// \(expected tcp://"):
        registry.factory("udp")


def test_a_scheme_has_one_backend() -> None:
    registry: Backends[str] = Backends("thing")
    registry.add("a", "tcp")
    with pytest.raises(ValueError, match=r"\['tcp'\] already have a backend"):
        registry.add("b", "udp", "tcp")


def test_the_registry_checks_the_url_of_the_settings() -> None:
    registry: Backends[str] = Backends("thing")
    registry.add("mem", "memory")

    class Model(BaseModel):
        url: Annotated[Dsn, registry.url_check()]

    assert Model(url=Dsn("memory://")).url.scheme == "memory"
    with pytest.raises(ValidationError, match=r"unsupported scheme 'redis' \(expected memory://\)"):
        Model(url=Dsn("redis://127.0.0.1:6379/0"))


@pytest.mark.parametrize(
    ("settings", "field", "registry"),
    [
        (CacheSettings, "url", CACHE_BACKENDS),
        (LockSettings, "url", LOCK_BACKENDS),
        (IdGenSettings, "etcd", IDGEN_BACKENDS),
        (MQSettings, "brokers", MQ_BACKENDS),
    ],
)
def test_each_component_accepts_exactly_its_registered_schemes(
    settings: type[BaseModel], field: str, registry: Backends[object]
) -> None:
    expected = ", ".join(f"{s}://" for s in registry.schemes)
    # escaped: a scheme may hold a regex metacharacter (redis+sentinel)
    with pytest.raises(ValidationError, match=re.escape(f"expected {expected}")):
        settings.model_validate({field: "nope://host:1"})


@pytest.mark.parametrize(
    ("brokers", "error"),
    [
        ("kafka://", "empty broker list"),
        ("10.0.0.1:9092,,10.0.0.2:9092", "an empty broker in the list"),
        ("kafka://10.0.0.1", "broker '10.0.0.1' is not host:port"),
        ("memory://x", "memory:// takes nothing after the scheme"),
        ("10.0.0.1:0", "port must be an integer in 1..65535"),
    ],
)
def test_mq_brokers_name_the_bad_part(brokers: str, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        MQSettings(brokers=brokers)


@pytest.mark.parametrize(
    ("brokers", "backend", "servers"),
    [
        ("memory://", "memory", []),
        (" 10.0.0.1:9092 , 10.0.0.2:9092 ", "kafka", ["10.0.0.1:9092", "10.0.0.2:9092"]),
        ("kafka://10.0.0.1:9092,10.0.0.2:9092", "kafka", ["10.0.0.1:9092", "10.0.0.2:9092"]),
    ],
)
def test_mq_brokers_pick_their_backend(brokers: str, backend: str, servers: list[str]) -> None:
    settings = MQSettings(brokers=brokers)
    assert (settings.backend, settings.bootstrap_servers) == (backend, servers)
    assert MQ_BACKENDS.factory(settings.backend).bridged is (backend == "kafka")
