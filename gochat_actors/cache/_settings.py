"""``[cache]``: Redis (or the in-memory cache)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from .._dsn import Dsn
from .._section import PositiveSeconds, Section, cross_field_error, raise_cross_field_errors
from .._tls import TLSFiles, url_tls_problems
from ._backends import BACKENDS

__all__ = ["CacheSettings", "CacheUrl"]

CacheUrl = Annotated[Dsn, BACKENDS.url_check()]
"""A cache URL: ``redis://[:password@]host:6379/0``, ``rediss://...``,
``redis+cluster://h1:p1,h2:p2`` (``rediss+cluster://`` over TLS) or ``memory://``."""


class CacheSettings(Section):
    """The ``[cache]`` section.

    Example::

        CacheSettings(url="redis://:pw@127.0.0.1:6379/0", key_prefix="chat:")
    """

    url: CacheUrl = Field(
        default=Dsn("memory://"),
        description=(
            "`redis://[:password@]host:port/db`, `rediss://...` (TLS), "
            "`redis+sentinel://h:p,h:p/<master>/<db>`, "
            "`redis+cluster://host:port,host:port` (`rediss+cluster://`: TLS), or `memory://`."
        ),
    )
    key_prefix: str = Field(default="", description="Prepended to every key.")
    op_timeout: PositiveSeconds = Field(
        default=1.0, description="Timeout of one cache operation, seconds."
    )
    ca_file: str = Field(
        default="", description="TLS (`rediss`): a CA file (PEM) to trust besides the system's."
    )
    cert_file: str = Field(default="", description="TLS: a client certificate (PEM).")
    key_file: str = Field(default="", description="TLS: the client certificate's key (PEM).")

    @property
    def tls(self) -> TLSFiles:
        """The TLS files (``ca_file``, ``cert_file``, ``key_file``)."""
        return TLSFiles(self.ca_file, self.cert_file, self.key_file)

    @model_validator(mode="after")
    def _check_tls(self) -> CacheSettings:
        problems = url_tls_problems(self.url.scheme, self.tls)
        raise_cross_field_errors(self, [cross_field_error(f, p) for f, p in problems])
        return self
