"""TLS client contexts from PEM files, shared by Redis (``[cache]``/``[lock]``
``ca_file``/``cert_file``/``key_file``) and MariaDB (``ssl_ca``/``ssl_cert``/``ssl_key``
in the URL's query).

The checks (:meth:`TLSFiles.problems`) run when the settings load, so
``gochat-actors check-config`` names a missing file or a certificate without its key in
one line each; :meth:`TLSFiles.context` builds the ``ssl.SSLContext`` when a backend
connects. The context always verifies the server's certificate and its host name (a
``ca_file`` adds a trusted CA to the system's; without one, the system's CAs alone).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from ._exceptions import GochatError

__all__ = [
    "MYSQL_TLS_PARAMS",
    "NO_TLS",
    "TLS_REDIS_SCHEMES",
    "TLSFiles",
    "mysql_tls_files",
    "redis_ssl_context",
    "url_tls_problems",
]

MYSQL_TLS_PARAMS = ("ssl_ca", "ssl_cert", "ssl_key")
"""The query parameters of a ``mysql+aiomysql://`` URL that :func:`mysql_tls_files` reads."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """The PEM files of a TLS client: a CA to trust, a client certificate and its key
    (each ``""`` when not given). ``names`` are the setting names used in messages.

    Example::

        files = TLSFiles(ca_file="/etc/gochat/ca.pem")
        context = files.context(error=CacheError)   # verifies the server against ca.pem
    """

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    names: tuple[str, str, str] = ("ca_file", "cert_file", "key_file")

    def __bool__(self) -> bool:
        return any(self.paths)

    @property
    def paths(self) -> tuple[str, str, str]:
        """``(ca_file, cert_file, key_file)``."""
        return (self.ca_file, self.cert_file, self.key_file)

    def problems(self) -> list[str]:
        """One line per problem: a file that is missing or unreadable, a certificate
        without its key (or the reverse), PEM data that does not load. Empty: usable.

        Example::

            >>> TLSFiles(ca_file="/nonexistent/ca.pem").problems()
            ['ca_file: no such file: /nonexistent/ca.pem']
        """
        return [message for _, message in self.field_problems()]

    def field_problems(self) -> list[tuple[tuple[str, ...], str]]:
        """:meth:`problems`, each with the names of the settings it is about.

        Example::

            >>> TLSFiles(key_file="/k.pem").field_problems()[0]
            (('key_file', 'cert_file'), 'key_file is set without cert_file')
        """
        ca_name, cert_name, key_name = self.names
        found: list[tuple[tuple[str, ...], str]] = []
        if self.cert_file and not self.key_file:
            message = f"{cert_name} is set without {key_name} (a client certificate needs its key)"
            found.append(((cert_name, key_name), message))
        if self.key_file and not self.cert_file:
            found.append(((key_name, cert_name), f"{key_name} is set without {cert_name}"))
        for name, path in zip(self.names, self.paths, strict=True):
            problem = _file_problem(path)
            if problem:
                found.append(((name,), f"{name}: {problem}"))
        if not found:
            try:
                self._build()
            except (ssl.SSLError, OSError, ValueError) as exc:
                fields = self.names if self.cert_file else (ca_name,)
                found.append((fields, self._load_problem(exc)))
        return found

    def context(self, *, error: type[GochatError]) -> ssl.SSLContext:
        """A client ``ssl.SSLContext``: verifies the server's certificate (against
        ``ca_file`` and the system's CAs) and host name; presents ``cert_file`` when given.
        Raises ``error`` naming the bad file.

        Example::

            context = TLSFiles(ca_file="ca.pem").context(error=CacheError)
        """
        problems = self.problems()
        if problems:
            raise error("TLS: " + "; ".join(problems))
        try:
            return self._build()
        except (ssl.SSLError, OSError, ValueError) as exc:  # changed since problems()
            raise error("TLS: " + self._load_problem(exc)) from exc

    def _build(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file or None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file or None)
        return context

    def _load_problem(self, exc: Exception) -> str:
        ca_name, cert_name, key_name = self.names
        what = f"{ca_name} ({self.ca_file})" if self.ca_file else ""
        if self.cert_file:
            pair = f"{cert_name}/{key_name} ({self.cert_file}, {self.key_file})"
            what = f"{what} or {pair}" if what else pair
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        return f"{what or 'TLS files'}: not loadable as PEM ({reason})"


NO_TLS = TLSFiles()
"""No TLS files (the default of a Redis backend's ``tls``)."""


def _file_problem(path: str) -> str:
    if not path:
        return ""
    if not os.path.exists(path):
        return f"no such file: {path}"
    if not os.path.isfile(path):
        return f"not a file: {path}"
    if not os.access(path, os.R_OK):
        return f"not readable: {path}"
    return ""


def mysql_tls_files(query: Mapping[str, str]) -> TLSFiles:
    """The TLS files a ``mysql+aiomysql://`` URL's query names (``ssl_ca``, ``ssl_cert``,
    ``ssl_key``); falsy when it names none.

    Example::

        >>> mysql_tls_files({"ssl_ca": "/etc/ca.pem", "charset": "utf8mb4"}).ca_file
        '/etc/ca.pem'
    """
    ca, cert, key = (query.get(name, "") for name in MYSQL_TLS_PARAMS)
    return TLSFiles(ca, cert, key, names=MYSQL_TLS_PARAMS)


TLS_REDIS_SCHEMES = frozenset({"rediss", "rediss+cluster"})
"""Redis URL schemes that speak TLS (the files of :class:`TLSFiles` apply to them only)."""


def redis_ssl_context(
    scheme: str, files: TLSFiles, *, error: type[GochatError]
) -> ssl.SSLContext | None:
    """The TLS context of a Redis URL of ``scheme``: ``None`` for a plain scheme, and for
    ``rediss://`` without files (coredis' own default, unchanged); else
    :meth:`TLSFiles.context` (``rediss+cluster://`` without files: the system's CAs).

    Example::

        context = redis_ssl_context("rediss", TLSFiles(ca_file="ca.pem"), error=CacheError)
    """
    if scheme not in TLS_REDIS_SCHEMES or (scheme == "rediss" and not files):
        return None
    return files.context(error=error)


def url_tls_problems(scheme: str, files: TLSFiles) -> list[tuple[tuple[str, ...], str]]:
    """``files``' problems (with the settings they are about) for a Redis URL of
    ``scheme``, including files given with a plain (non-TLS) scheme: for the validators.

    Example::

        >>> url_tls_problems("redis", TLSFiles(ca_file="ca.pem"))
        [(('ca_file', 'url'), 'ca_file is for rediss:// and rediss+cluster:// URLs, not redis://')]
    """
    if not files:
        return []
    if scheme not in TLS_REDIS_SCHEMES:
        given = [n for n, v in zip(files.names, files.paths, strict=True) if v]
        what = "/".join(given)
        verb = "is" if len(given) == 1 else "are"
        message = f"{what} {verb} for rediss:// and rediss+cluster:// URLs, not {scheme}://"
        return [((*given, "url"), message)]
    return files.field_problems()
