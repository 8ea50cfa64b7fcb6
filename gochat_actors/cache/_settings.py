"""``[cache]``: Redis (or the in-memory cache)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .._dsn import Dsn
from .._section import PositiveSeconds
from .._tls_settings import CaFile, CertFile, KeyFile, RedisTLSSection
from ._backends import BACKENDS

__all__ = ["CacheSettings", "CacheUrl"]

CacheUrl = Annotated[Dsn, BACKENDS.url_check()]
"""A cache URL: ``redis://[:password@]host:6379/0``, ``rediss://...``,
``redis+cluster://h1:p1,h2:p2`` (``rediss+cluster://`` over TLS) or ``memory://``."""


class CacheSettings(RedisTLSSection):
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
    ca_file: CaFile = ""
    cert_file: CertFile = ""
    key_file: KeyFile = ""
