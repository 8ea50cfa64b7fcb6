"""The machine-ID keeper's etcd backends by URL scheme: ``memory://`` (an in-process etcd
on the trio clock) and ``http://``/``https://`` (etcd's v3 JSON gateway over httpx,
imported only when used). The registry also checks ``[idgen] etcd`` (empty: a static
machine ID, no backend)."""

from __future__ import annotations

from collections.abc import Callable

from .._backends import Backends
from .._dsn import Dsn
from ._memory import MemoryEtcd
from ._protocol import EtcdBackend

__all__ = ["BACKENDS", "EtcdFactory"]

EtcdFactory = Callable[[Dsn, float], EtcdBackend]
"""Makes the backend of ``(url, request_timeout)``; the keeper closes it when done."""


def _memory(url: Dsn, request_timeout: float) -> EtcdBackend:
    return MemoryEtcd()


def _http(url: Dsn, request_timeout: float) -> EtcdBackend:
    from ._etcd import HttpEtcd  # the HTTP driver is imported only when used

    return HttpEtcd(url.reveal(), timeout=request_timeout)


BACKENDS: Backends[EtcdFactory] = Backends("idgen")
BACKENDS.add(_http, "http", "https")
BACKENDS.add(_memory, "memory")
