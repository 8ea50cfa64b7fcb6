"""``[db]``: the primary database and its read replicas."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError
from pydantic_settings import NoDecode

from .._dsn import Dsn
from .._section import NonNegativeSeconds, PositiveSeconds, Section, split_list
from ._backends import BACKENDS

__all__ = ["DBSettings", "DBUrl"]


def _check_dialect(dsn: Dsn) -> Dsn:
    """What the URL's dialect finds wrong beyond its scheme (a MySQL URL's TLS files:
    ``?ssl_ca=...&ssl_cert=...&ssl_key=...`` exist, load, and come as a certificate with
    its key)."""
    problems = BACKENDS.factory(dsn.scheme).url_problems(dsn)
    if problems:
        raise PydanticCustomError("dsn_tls", "; ".join(problems))
    return dsn


DBUrl = Annotated[Dsn, BACKENDS.url_check(), AfterValidator(_check_dialect)]
"""A database URL: ``mysql+aiomysql://user:pass@host:3306/db`` or ``sqlite+aiosqlite:///path``;
TLS to MySQL/MariaDB with ``?ssl_ca=/path/ca.pem`` (and ``ssl_cert``, ``ssl_key``)."""


class DBSettings(Section):
    """The ``[db]`` section.

    Example::

        DBSettings(primary="mysql+aiomysql://app:pw@127.0.0.1:3306/chat", pool_size=20)
    """

    primary: DBUrl = Field(
        default=Dsn("sqlite+aiosqlite:///:memory:"),
        description="Primary (writes) URL: `mysql+aiomysql://...` or `sqlite+aiosqlite:///...`.",
    )
    replicas: Annotated[tuple[DBUrl, ...], NoDecode, BeforeValidator(split_list)] = Field(
        default=(), description="Read replica URLs (same schemes). Empty: reads go to the primary."
    )
    pool_size: int = Field(
        default=10,
        ge=1,
        description="Connections per engine (MySQL: one more per server, for its probes).",
    )
    probe_interval: PositiveSeconds = Field(
        default=2.0, description="Seconds between replica health probes."
    )
    max_lag: NonNegativeSeconds = Field(
        default=5.0, description="A replica lagging more than this many seconds is ejected."
    )
    sticky_seconds: NonNegativeSeconds = Field(
        default=2.0,
        description="After a write, reads stay on the primary this many seconds, then go "
        "only to replicas a probe has shown to have the write (0: no read-your-writes).",
    )

    @property
    def private_memory(self) -> bool:
        """Whether the database is a private in-memory one (the default
        ``sqlite+aiosqlite:///:memory:``, no replica): nothing else can reach it, so it
        may run in place on the trio thread."""
        return not self.replicas and BACKENDS.factory(self.primary.scheme).private_memory(
            self.primary
        )
