"""The exceptions of :mod:`gochat_actors`, all rooted at :class:`GochatError`.

::

    GochatError
     ├── SettingsError          the settings are invalid; .problems lists every problem
     └── BridgeError            the trio <-> asyncio bridge failed a call
          └── BridgeNotRunning  the asyncio loop is not (or no longer) open

Components add their own branch here (one root per component, e.g. ``CacheError``),
so users catch ``gochat_actors.<X>Error``, never a driver's exception: drivers'
errors are translated at the edge, the original is ``__cause__``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BridgeError",
    "BridgeNotRunning",
    "GochatError",
    "SettingsError",
    "SettingsProblem",
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


# Show the public path in tracebacks and reprs: gochat_actors.SettingsError.
for _cls in (GochatError, SettingsProblem, SettingsError, BridgeError, BridgeNotRunning):
    _cls.__module__ = "gochat_actors"
del _cls
