"""``[lock]``: distributed locks."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .._dsn import Dsn
from .._section import PositiveSeconds, Section
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
            "Empty: the cache's url. Else `redis://...`, `rediss://...`, "
            "`redis+sentinel://...`, `memory://`."
        ),
    )
    default_ttl: PositiveSeconds = Field(
        default=10.0, description="Lock TTL when none is given, seconds."
    )
