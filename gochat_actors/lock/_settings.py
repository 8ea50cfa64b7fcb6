"""``[lock]``: distributed locks."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .._dsn import Dsn
from .._section import PositiveSeconds
from .._tls_settings import CaFile, CertFile, KeyFile, RedisTLSSection
from ._backends import BACKENDS

__all__ = ["LockSettings", "LockUrl"]

LockUrl = Annotated[Dsn, BACKENDS.url_check(allow_empty=True)]
"""A lock backend URL (as the cache's), or empty for "the cache's url"."""


class LockSettings(RedisTLSSection):
    """The ``[lock]`` section.

    Example::

        LockSettings(default_ttl=30.0)  # same Redis as the cache
    """

    url: LockUrl = Field(
        default=Dsn(""),
        description=(
            "Empty: the cache's url (and TLS files). Else `redis://...`, `rediss://...`, "
            "`redis+sentinel://...`, `redis+cluster://h:p,h:p`, `rediss+cluster://...`, "
            "`memory://`."
        ),
    )
    default_ttl: PositiveSeconds = Field(
        default=10.0, description="Lock TTL when none is given, seconds."
    )
    ca_file: CaFile = ""
    cert_file: CertFile = ""
    key_file: KeyFile = ""

    def tls_problems(self) -> list[tuple[tuple[str, ...], str]]:
        """As the cache's; and files without a url of their own (an empty url uses the
        cache's url and files)."""
        if not self.url and self.tls:
            given = tuple(n for n, v in zip(self.tls.names, self.tls.paths, strict=True) if v)
            message = "TLS files need a [lock] url (an empty url uses the cache's url and files)"
            return [((*given, "url"), message)]
        return super().tls_problems()
