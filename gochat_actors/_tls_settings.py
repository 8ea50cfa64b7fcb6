"""The TLS files of a section whose ``url`` is a Redis URL (``[cache]``, ``[lock]``):
``ca_file``, ``cert_file``, ``key_file``, their :class:`~gochat_actors._tls.TLSFiles`, and
their check when the settings load (one line per problem in ``check-config``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Self

from pydantic import Field, model_validator

from ._section import Section, cross_field_error, raise_cross_field_errors
from ._tls import TLSFiles, url_tls_problems

if TYPE_CHECKING:
    from ._dsn import Dsn

__all__ = ["CaFile", "CertFile", "KeyFile", "RedisTLSSection"]

CaFile = Annotated[
    str, Field(description="TLS (`rediss`): a CA file (PEM) to trust besides the system's.")
]
"""The type of a section's ``ca_file`` (default ``""``)."""

CertFile = Annotated[str, Field(description="TLS: a client certificate (PEM).")]
"""The type of a section's ``cert_file`` (default ``""``)."""

KeyFile = Annotated[str, Field(description="TLS: the client certificate's key (PEM).")]
"""The type of a section's ``key_file`` (default ``""``)."""


class RedisTLSSection(Section):
    """A section with a Redis ``url`` and its TLS files, checked together when it loads.

    The subclass declares the fields, in the order it lists them::

        class CacheSettings(RedisTLSSection):
            url: CacheUrl = Field(default=Dsn("memory://"))
            ca_file: CaFile = ""
            cert_file: CertFile = ""
            key_file: KeyFile = ""
    """

    if TYPE_CHECKING:
        url: Dsn
        ca_file: str
        cert_file: str
        key_file: str

    @property
    def tls(self) -> TLSFiles:
        """The TLS files (``ca_file``, ``cert_file``, ``key_file``)."""
        return TLSFiles(self.ca_file, self.cert_file, self.key_file)

    def tls_problems(self) -> list[tuple[tuple[str, ...], str]]:
        """What is wrong with the TLS files for ``url``, each with the settings it is
        about: a file missing or not loadable, files beside a plain ``redis://`` URL."""
        return url_tls_problems(self.url.scheme, self.tls)

    @model_validator(mode="after")
    def _check_tls(self) -> Self:
        problems = self.tls_problems()
        raise_cross_field_errors(self, [cross_field_error(f, p) for f, p in problems])
        return self
