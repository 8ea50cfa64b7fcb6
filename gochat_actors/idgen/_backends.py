"""The machine-ID keeper's etcd backends by URL scheme: ``memory://`` (an in-process etcd
on the trio clock) and ``http://``/``https://`` (etcd's v3 JSON gateway over httpx,
imported only when used; several members make a :class:`ClusterEtcd`). The registry
also checks ``[idgen] etcd`` (empty: a static machine ID, no backend)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .._backends import Backends
from .._dsn import Dsn
from .._exceptions import IdGenUnavailable
from ._members import members_of
from ._memory import MemoryEtcd
from ._protocol import EtcdBackend

if TYPE_CHECKING:
    import ssl

    from ._settings import IdGenSettings

__all__ = ["BACKENDS", "NO_OPTIONS", "EtcdFactory", "EtcdOptions"]


@dataclass(frozen=True, slots=True)
class EtcdOptions:
    """How to reach etcd beyond its URL: credentials, TLS files, member retry.

    Example::

        options = EtcdOptions.from_settings(settings.idgen)
    """

    user: str = ""
    password: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    retry_after: float = 5.0

    @classmethod
    def from_settings(cls, settings: IdGenSettings) -> EtcdOptions:
        """The options ``[idgen]`` gives (a member is retried after ``lease_ttl``)."""
        return cls(
            user=settings.etcd_user,
            password=settings.etcd_password.get_secret_value(),
            ca_file=settings.etcd_ca_file,
            cert_file=settings.etcd_cert_file,
            key_file=settings.etcd_key_file,
            retry_after=settings.lease_ttl,
        )

    def __repr__(self) -> str:  # never the password
        return f"EtcdOptions(user={self.user!r}, ca_file={self.ca_file!r})"

    def tls_context(self) -> ssl.SSLContext | bool:
        """The TLS context for https:// members (``True``: the system's CAs, no client
        certificate); :class:`~gochat_actors.IdGenUnavailable` when a file is unusable."""
        if not (self.ca_file or self.cert_file):
            return True
        import ssl

        try:
            context = ssl.create_default_context(cafile=self.ca_file or None)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise IdGenUnavailable(f"etcd TLS files cannot be used: {exc}") from exc
        return context


NO_OPTIONS = EtcdOptions()
"""No credentials, no TLS files."""


class EtcdFactory(Protocol):
    """Makes the backend of ``(url, request_timeout, options)``; the keeper closes it."""

    def __call__(
        self, url: Dsn, request_timeout: float, options: EtcdOptions = NO_OPTIONS, /
    ) -> EtcdBackend:
        """The backend for ``url``."""
        ...


def _memory(url: Dsn, request_timeout: float, options: EtcdOptions = NO_OPTIONS, /) -> EtcdBackend:
    return MemoryEtcd()


def _http(url: Dsn, request_timeout: float, options: EtcdOptions = NO_OPTIONS, /) -> EtcdBackend:
    from ._cluster import ClusterEtcd  # the HTTP driver is imported only when used
    from ._etcd import HttpEtcd

    verify = options.tls_context() if url.scheme == "https" else True

    def member(dsn: Dsn) -> HttpEtcd:
        return HttpEtcd(
            dsn.reveal(),
            timeout=request_timeout,
            user=options.user,
            password=options.password,
            verify=verify,
        )

    members = members_of(url)
    if len(members) == 1:
        return member(members[0])
    return ClusterEtcd(
        [(m.masked, member(m)) for m in members],
        timeout=request_timeout,
        retry_after=options.retry_after,
    )


BACKENDS: Backends[EtcdFactory] = Backends("idgen")
BACKENDS.add(_http, "http", "https")
BACKENDS.add(_memory, "memory")
