"""``Settings``: every section, composed."""

from __future__ import annotations

from pydantic import Field, PrivateAttr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ..cache import CacheSettings
from ..db import DBSettings
from ..http import HTTPSettings
from ..idgen import IdGenSettings
from ..lock import LockSettings
from ..log import LogSettings
from ..metrics import MetricsSettings
from ..mq import MQSettings
from ._service import ServiceSettings
from ._source import SettingSource

__all__ = [
    "ENV_NESTED_DELIMITER",
    "ENV_PREFIX",
    "Settings",
    "record_sources",
    "recorded_sources",
]

ENV_PREFIX = "GOCHAT_"
ENV_NESTED_DELIMITER = "__"


class Settings(BaseSettings):
    """All settings, one attribute per TOML section; every section has embedded defaults.

    ``Settings(...)`` validates only what it is given (defaults for the rest): it does
    not read files or the environment. Use :func:`load_settings` for the layered
    sources (defaults < TOML file < environment < overrides) and the error report.

    Example::

        settings = Settings(db={"pool_size": 20})
        settings.db.pool_size, settings.cache.url.scheme   # (20, 'memory')
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        validate_default=True,
        hide_input_in_errors=True,  # a refused URL's text would show its password
    )

    service: ServiceSettings = Field(default_factory=ServiceSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    http: HTTPSettings = Field(default_factory=HTTPSettings)
    db: DBSettings = Field(default_factory=DBSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    lock: LockSettings = Field(default_factory=LockSettings)
    mq: MQSettings = Field(default_factory=MQSettings)
    idgen: IdGenSettings = Field(default_factory=IdGenSettings)

    # where each value came from, set by load_settings(); see settings_sources()
    _sources: dict[str, SettingSource] | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        # Values only: where they came from (the private _sources) does not matter.
        if not isinstance(other, Settings):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__.values()))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the constructor's arguments: load_settings() does the layering itself,
        # so that it can tell where every value came from.
        return (init_settings,)


def record_sources(settings: Settings, sources: dict[str, SettingSource]) -> None:
    """Note where each value of ``settings`` came from (what ``load_settings`` found)."""
    settings._sources = sources


def recorded_sources(settings: Settings) -> dict[str, SettingSource] | None:
    """What :func:`record_sources` noted for ``settings`` (None: built directly)."""
    return settings._sources
