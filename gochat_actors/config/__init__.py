"""Layered settings: defaults < TOML file < environment < overrides, all errors at once.

Example::

    from gochat_actors.config import load_settings, settings_sources

    settings = load_settings("chat.toml", http={"port": 0})
    print(settings.db.primary)                 # password masked
    print(settings_sources(settings)["http.port"])  # override
"""

from .._dsn import Dsn
from .._exceptions import SettingsError, SettingsProblem
from ..cache import CacheSettings
from ..db import DBSettings
from ..http import HTTPSettings
from ..idgen import IdGenSettings
from ..lock import LockSettings
from ..log import LogSettings
from ..metrics import MetricsSettings
from ..mq import MQSettings
from ._load import CONFIG_ENV_VAR, load_settings
from ._runtime import check_runtime
from ._service import ServiceSettings
from ._settings import Settings
from ._sources import (
    SettingSource,
    SettingValue,
    env_var_name,
    explain_settings,
    settings_sources,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "CacheSettings",
    "DBSettings",
    "Dsn",
    "HTTPSettings",
    "IdGenSettings",
    "LockSettings",
    "LogSettings",
    "MQSettings",
    "MetricsSettings",
    "ServiceSettings",
    "SettingSource",
    "SettingValue",
    "Settings",
    "SettingsError",
    "SettingsProblem",
    "check_runtime",
    "env_var_name",
    "explain_settings",
    "load_settings",
    "settings_sources",
]
