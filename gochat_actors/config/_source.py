"""One source of an effective setting: a default, a file, the environment, an override."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT", "OVERRIDE", "SettingSource", "SourceKind"]

SourceKind = Literal["default", "file", "env", "override"]


@dataclass(frozen=True, slots=True)
class SettingSource:
    """One source of a value: ``kind`` and, for files and env, ``location``.

    ``str()`` gives ``"default"``, ``"file /etc/chat.toml"``, ``"env GOCHAT_DB__POOL_SIZE"``
    or ``"override"`` (a keyword argument of ``load_settings`` or ``Settings``).

    Example::

        >>> str(SettingSource("env", "GOCHAT_HTTP__PORT"))
        'env GOCHAT_HTTP__PORT'
    """

    kind: SourceKind
    location: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.location}" if self.location else self.kind


DEFAULT = SettingSource("default")
OVERRIDE = SettingSource("override")
