"""gochat_actors: supervised trio components for a chat backend.

Example::

    from gochat_actors import load_settings

    settings = load_settings()            # embedded defaults: no server needed
    print(settings.db.primary)            # sqlite+aiosqlite:///:memory:
"""

from ._bridge import Bridge
from ._dsn import Dsn
from ._exceptions import BridgeError, BridgeNotRunning, GochatError, SettingsError, SettingsProblem
from .config import Settings, load_settings

__all__ = [
    "Bridge",
    "BridgeError",
    "BridgeNotRunning",
    "Dsn",
    "GochatError",
    "Settings",
    "SettingsError",
    "SettingsProblem",
    "load_settings",
]
