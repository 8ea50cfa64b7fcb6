"""gochat_actors: supervised trio components for a chat backend.

Example::

    from gochat_actors import load_settings

    settings = load_settings()            # embedded defaults: no server needed
    print(settings.db.primary)            # sqlite+aiosqlite:///:memory:
"""

from ._bridge import Bridge
from ._dsn import Dsn
from ._exceptions import (
    BridgeError,
    BridgeNotRunning,
    CacheError,
    CacheMiss,
    CacheTimeout,
    CacheUnavailable,
    ClockBehind,
    ComponentUnavailable,
    DBCommitUnknown,
    DBError,
    DBIntegrityError,
    DBProgrammingError,
    DBRetryExhausted,
    DBTimeout,
    DBUnavailable,
    GochatError,
    IdGenAuthFailed,
    IdGenError,
    IdGenUnavailable,
    LockError,
    LockLost,
    LockNotAcquired,
    LockUnavailable,
    MachineIdLost,
    MachineIdsExhausted,
    MessageTooLarge,
    MQError,
    MQTimeout,
    MQUnavailable,
    SettingsError,
    SettingsProblem,
    TracingUnavailable,
)
from ._version import __version__ as __version__
from .config import Settings, load_settings
from .service import Service, open_service, run

__all__ = [
    "Bridge",
    "BridgeError",
    "BridgeNotRunning",
    "CacheError",
    "CacheMiss",
    "CacheTimeout",
    "CacheUnavailable",
    "ClockBehind",
    "ComponentUnavailable",
    "DBCommitUnknown",
    "DBError",
    "DBIntegrityError",
    "DBProgrammingError",
    "DBRetryExhausted",
    "DBTimeout",
    "DBUnavailable",
    "Dsn",
    "GochatError",
    "IdGenAuthFailed",
    "IdGenError",
    "IdGenUnavailable",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "LockUnavailable",
    "MQError",
    "MQTimeout",
    "MQUnavailable",
    "MachineIdLost",
    "MachineIdsExhausted",
    "MessageTooLarge",
    "Service",
    "Settings",
    "SettingsError",
    "SettingsProblem",
    "TracingUnavailable",
    "load_settings",
    "open_service",
    "run",
]
