"""``[lock]``: distributed locks."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from .._dsn import Dsn
from .._section import PositiveSeconds, Section, cross_field_error, raise_cross_field_errors
from .._tls import TLSFiles, url_tls_problems
from ._backends import BACKENDS

__all__ = ["LockSettings", "LockUrl"]

LockUrl = Annotated[Dsn, BACKENDS.url_check(allow_empty=True)]
"""A lock backend URL (as the cache's), or empty for "the cache's url"."""


class LockSettings(Section):
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
    def _check_tls(self) -> LockSettings:
        if not self.url and self.tls:
            given = tuple(n for n, v in zip(self.tls.names, self.tls.paths, strict=True) if v)
            message = "TLS files need a [lock] url (an empty url uses the cache's url and files)"
            raise_cross_field_errors(self, [cross_field_error((*given, "url"), message)])
        problems = url_tls_problems(self.url.scheme, self.tls)
        raise_cross_field_errors(self, [cross_field_error(f, p) for f, p in problems])
        return self
