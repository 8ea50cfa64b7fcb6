"""The exceptions of :mod:`gochat_actors`, all rooted at :class:`GochatError`.

::

    GochatError
     ├── SettingsError            the settings are invalid; .problems lists every problem
     ├── BridgeError              the trio <-> asyncio bridge failed a call
     │    └── BridgeNotRunning    the asyncio loop is not (or no longer) open
     ├── ComponentUnavailable     a component's actor is not running (restarting, stopped)
     ├── CacheError               a cache operation failed
     │    ├── CacheMiss           the key is absent (not a failure of the cache)
     │    ├── CacheUnavailable    Redis unreachable / connection lost (+ComponentUnavailable)
     │    └── CacheTimeout        the operation exceeded its timeout (+TimeoutError)
     ├── LockError                a distributed-lock operation failed
     │    ├── LockNotAcquired     not acquired within `wait` (ErrLockAcquisitionFailed)
     │    ├── LockLost            the lock was (or may have been) lost while held
     │    └── LockUnavailable     the lock backend is unreachable (+ComponentUnavailable)
     ├── DBError                  a database operation failed
     │    ├── DBUnavailable       cannot reach the server (+ComponentUnavailable)
     │    ├── DBIntegrityError    a constraint was violated (duplicate key, foreign key)
     │    ├── DBTimeout           the operation exceeded its timeout (+TimeoutError)
     │    ├── DBProgrammingError  bad SQL / unknown table; carries the statement, never params
     │    ├── DBCommitUnknown     the COMMIT was sent but its reply never came: outcome unknown
     │    └── DBRetryExhausted    with_transaction() ran out of retries on deadlocks
     ├── MQError                  a message-queue operation failed
     │    ├── MQUnavailable       the broker is unreachable (+ComponentUnavailable)
     │    ├── MessageTooLarge     the broker refused the message's size
     │    └── MQTimeout           the operation exceeded its timeout (+TimeoutError)
     ├── IdGenError               an ID could not be generated
     │    ├── MachineIdLost       not sure of the machine ID (lease may have expired)
     │    ├── MachineIdsExhausted every machine ID is held by someone
     │    ├── ClockBehind         the clock is behind the last issued timestamp
     │    └── IdGenUnavailable    etcd unreachable or failed a request (+ComponentUnavailable)
     │         └── IdGenAuthFailed  etcd refused etcd_user/etcd_password (or its TLS client)
     └── TracingUnavailable       tracing.enable() without opentelemetry-api (the otel extra)

Components add their own branch here (one root per component, e.g. ``CacheError``),
so users catch ``gochat_actors.<X>Error``, never a driver's exception: drivers'
errors are translated at the edge, the original is ``__cause__``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
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
    "SettingsError",
    "SettingsProblem",
    "TracingUnavailable",
]


class GochatError(Exception):
    """Root of every error raised by :mod:`gochat_actors`.

    Example::

        try:
            settings = load_settings("app.toml")
        except GochatError as exc:
            print("cannot start:", exc)
    """


@dataclass(frozen=True, slots=True)
class SettingsProblem:
    """One problem found while loading settings.

    ``path`` is the dotted field path (``"db.pool_size"``), ``source`` where the bad
    value came from (``"file app.toml"``, ``"env GOCHAT_DB__POOL_SIZE"``,
    ``"override"``, ``"default"``), ``message`` what is wrong. Values are never
    included: they may be secrets.

    Example::

        SettingsProblem("http.port", "env GOCHAT_HTTP__PORT", "must be <= 65535")
    """

    path: str
    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.source}]"


class SettingsError(GochatError):
    """The settings are invalid. ``problems`` lists every problem found, all at once.

    Example::

        try:
            load_settings("app.toml")
        except SettingsError as exc:
            for problem in exc.problems:
                print(problem.path, problem.source, problem.message)
    """

    problems: tuple[SettingsProblem, ...]

    def __init__(self, problems: tuple[SettingsProblem, ...] | list[SettingsProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(self._render())

    def __reduce__(self) -> tuple[type[SettingsError], tuple[tuple[SettingsProblem, ...]]]:
        return (type(self), (self.problems,))

    def _render(self) -> str:
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in settings"
        return "\n  ".join([f"{head}:", *(str(p) for p in self.problems)])


class BridgeError(GochatError):
    """A call across the trio <-> asyncio bridge failed for a bridge reason.

    Errors raised by the asyncio code itself are *not* wrapped: they arrive as
    themselves. This covers the bridge's own failures, e.g. the asyncio task was
    cancelled from the asyncio side.

    Example::

        try:
            await bridge.run_asyncio(fetch, url)
        except BridgeError:
            ...  # the loop went away; retry once it is back (bridge.wait_ready())
    """


class BridgeNotRunning(BridgeError):
    """The bridge's asyncio loop is not open (not yet started, or stopped).

    Example::

        bridge = Bridge()
        try:
            await bridge.run_asyncio(fetch, url)
        except BridgeNotRunning:
            await bridge.wait_ready()
    """


class ComponentUnavailable(GochatError):
    """The component's actor is not running (starting, restarting, or stopped) and did not
    come back within the operation's timeout.

    Example::

        try:
            await cache.get("k")
        except ComponentUnavailable:
            ...  # degrade: serve without the cache
    """


class CacheError(GochatError):
    """A cache operation failed. Example: ``except CacheError: ...``"""


class CacheMiss(CacheError, KeyError):
    """The key is not in the cache (the original's ``ErrCacheMiss``).

    Example::

        try:
            user = await cache.get(f"user:{uid}")
        except CacheMiss:
            user = await load_user(uid)
    """

    def __str__(self) -> str:
        return Exception.__str__(self)


class CacheUnavailable(CacheError, ComponentUnavailable):
    """The cache backend is unreachable or its connection was lost."""


class CacheTimeout(CacheError, TimeoutError):
    """A cache operation exceeded its timeout."""


class LockError(GochatError):
    """A distributed-lock operation failed. Example: ``except LockError: ...``"""


class LockNotAcquired(LockError):
    """The lock was not acquired within ``wait`` (``ErrLockAcquisitionFailed``).

    Example::

        try:
            async with locks.hold("room:42", wait=0.5):
                ...
        except LockNotAcquired:
            ...  # someone else is compacting this room
    """


class LockLost(LockError):
    """The lock was lost (or may have expired) while held; the body was cancelled."""


class LockUnavailable(LockError, ComponentUnavailable):
    """The lock backend is unreachable."""


class DBError(GochatError):
    """A database operation failed. Example: ``except DBError: ...``"""


class DBUnavailable(DBError, ComponentUnavailable):
    """The database server cannot be reached."""


class DBIntegrityError(DBError):
    """A constraint was violated (duplicate key, foreign key, not null)."""


class DBTimeout(DBError, TimeoutError):
    """A database operation exceeded its timeout."""


class DBProgrammingError(DBError):
    """Bad SQL or an unknown table/column; ``statement`` holds the SQL, never parameters."""

    def __init__(self, message: str, statement: str | None = None) -> None:
        super().__init__(message)
        self.statement = statement


class DBCommitUnknown(DBError):
    """The COMMIT was sent but no reply came (the connection was lost, or the caller
    was cancelled or timed out and the reply did not come within the grace): the
    transaction may or may not have committed. Check before running it again.

    Example::

        try:
            await db.with_transaction(transfer, 1, 2, 100)
        except DBCommitUnknown:
            ...  # look the transfer up before retrying it
    """


class DBRetryExhausted(DBError):
    """``with_transaction(retries=N)`` hit a retryable error N+1 times; cause attached."""


class MQError(GochatError):
    """A message-queue operation failed. Example: ``except MQError: ...``"""


class MQUnavailable(MQError, ComponentUnavailable):
    """The broker is unreachable."""


class MessageTooLarge(MQError):
    """The broker (or the producer's limit) refused the message's size."""


class MQTimeout(MQError, TimeoutError):
    """A message-queue operation exceeded its timeout."""


class IdGenError(GochatError):
    """An ID could not be generated. Example: ``except IdGenError: ...``"""


class MachineIdLost(IdGenError):
    """The generator cannot be sure it still holds its machine ID; it issues nothing.

    Example::

        try:
            i = ids.next_id()
        except MachineIdLost:
            await ids.wait_ready()
            i = ids.next_id()
    """


class MachineIdsExhausted(IdGenError):
    """Every machine ID is held by another generator."""


class ClockBehind(IdGenError):
    """The clock is behind the last timestamp issued under this machine ID."""


class IdGenUnavailable(IdGenError, ComponentUnavailable):
    """etcd (the machine-ID registry) is unreachable or failed a request."""


class IdGenAuthFailed(IdGenUnavailable):
    """etcd refused the credentials (``etcd_user``/``etcd_password``: a wrong password,
    an unknown user, auth required but none given, permission denied). At start this
    stops the service; later the keeper retries (an operator may fix the user).

    Example::

        try:
            async with open_service(settings) as svc: ...
        except IdGenAuthFailed as exc:
            print(f"fix [idgen] etcd_user/etcd_password: {exc}")
    """


class TracingUnavailable(GochatError):
    """Spans were asked for (:func:`gochat_actors.tracing.enable`) and OpenTelemetry is
    not installed: ``pip install 'gochat-actors[otel]'``.

    Example::

        try:
            tracing.enable()
        except TracingUnavailable:
            pass  # W3C headers and log IDs still work without OpenTelemetry
    """


# Show the public path in tracebacks and reprs: gochat_actors.SettingsError.
for _cls in (
    GochatError,
    SettingsProblem,
    SettingsError,
    BridgeError,
    BridgeNotRunning,
    ComponentUnavailable,
    CacheError,
    CacheMiss,
    CacheUnavailable,
    CacheTimeout,
    LockError,
    LockNotAcquired,
    LockLost,
    LockUnavailable,
    DBError,
    DBUnavailable,
    DBIntegrityError,
    DBTimeout,
    DBProgrammingError,
    DBCommitUnknown,
    DBRetryExhausted,
    MQError,
    MQUnavailable,
    MessageTooLarge,
    MQTimeout,
    IdGenError,
    MachineIdLost,
    MachineIdsExhausted,
    ClockBehind,
    IdGenUnavailable,
    IdGenAuthFailed,
    TracingUnavailable,
):
    _cls.__module__ = "gochat_actors"
del _cls
