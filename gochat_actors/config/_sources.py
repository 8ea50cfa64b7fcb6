"""Where each effective setting came from: defaults, a file, the environment, an override."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ._settings import ENV_NESTED_DELIMITER, ENV_PREFIX, Settings, recorded_sources
from ._source import DEFAULT, OVERRIDE, SettingSource

__all__ = [
    "DEFAULT",
    "OVERRIDE",
    "SettingSource",
    "SettingValue",
    "env_var_name",
    "explain_settings",
    "settings_sources",
]


@dataclass(frozen=True, slots=True)
class SettingValue:
    """One effective setting, for display: secrets are already masked in ``value``.

    Example::

        SettingValue("db.primary", "mysql+aiomysql://app:***@db:3306/chat",
                     SettingSource("env", "GOCHAT_DB__PRIMARY"), "GOCHAT_DB__PRIMARY")
    """

    path: str
    value: Any
    source: SettingSource
    env: str


def env_var_name(path: str) -> str:
    """The environment variable of a dotted settings path.

    Example::

        >>> env_var_name("db.pool_size")
        'GOCHAT_DB__POOL_SIZE'
    """
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(path.split(".")).upper()


def settings_sources(settings: Settings) -> dict[str, SettingSource]:
    """Where each effective value of ``settings`` came from, by dotted path.

    Every field of every section is listed. For settings built by ``load_settings`` the
    answer is exact; for a ``Settings(...)`` built directly, values passed to it are
    ``override`` and the rest ``default``.

    Example::

        settings = load_settings("app.toml", http={"port": 0})
        settings_sources(settings)["http.port"]        # SettingSource('override')
        str(settings_sources(settings)["db.primary"])  # 'file app.toml'
    """
    recorded = recorded_sources(settings)
    if recorded is not None:
        return dict(recorded)
    out: dict[str, SettingSource] = {}
    for section_name in Settings.model_fields:
        section: BaseModel = getattr(settings, section_name)
        given = section_name in settings.model_fields_set
        for field_name in type(section).model_fields:
            explicit = given and field_name in section.model_fields_set
            out[f"{section_name}.{field_name}"] = OVERRIDE if explicit else DEFAULT
    return out


def explain_settings(settings: Settings) -> list[SettingValue]:
    """Every effective setting with its (masked) value, source and environment variable.

    This is what ``gochat-actors check-config`` prints.

    Example::

        for row in explain_settings(load_settings()):
            print(f"{row.path} = {row.value!r}  ({row.source})")
    """
    sources = settings_sources(settings)
    dumped = settings.model_dump(mode="json")
    rows: list[SettingValue] = []
    for section_name, section in dumped.items():
        for field_name, value in section.items():
            path = f"{section_name}.{field_name}"
            rows.append(SettingValue(path, value, sources[path], env_var_name(path)))
    return rows
