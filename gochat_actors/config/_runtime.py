"""``check_runtime``: what only this machine can tell about valid settings."""

from __future__ import annotations

import os
from pathlib import Path

from .._exceptions import SettingsProblem
from ._settings import Settings
from ._sources import settings_sources

__all__ = ["check_runtime"]


def check_runtime(settings: Settings) -> list[SettingsProblem]:
    """The problems of ``settings`` that depend on this machine, which
    :func:`load_settings` leaves alone (a file may be checked on one machine and used on
    another): a ``log.outputs`` file whose directory is missing or not writable, that
    is a directory, or that the system refuses as a path (a name too long, a NUL); an
    ``idgen.etcd_*_file`` that is not a readable file.
    ``gochat-actors check-config`` reports them; ``open_service`` refuses to start with
    them (:class:`~gochat_actors.SettingsError`).

    Example::

        problems = check_runtime(load_settings("chat.toml"))   # [] when all is well
    """
    source = str(settings_sources(settings)["log.outputs"])
    problems: list[SettingsProblem] = []
    for output in settings.log.outputs:
        if output in ("stdout", "stderr"):
            continue
        try:
            why = _unwritable(Path(output))
        except OSError as exc:  # a name too long for the file system, say
            why = f"cannot be used: {exc.strerror or exc}"
        if why:
            problems.append(SettingsProblem("log.outputs", source, f"{output}: {why}"))
    return problems + _unreadable_etcd_files(settings)


def _unreadable_etcd_files(settings: Settings) -> list[SettingsProblem]:
    sources = settings_sources(settings)
    problems = []
    for name in ("etcd_ca_file", "etcd_cert_file", "etcd_key_file"):
        given = getattr(settings.idgen, name)
        if not given:
            continue
        path = Path(given)
        try:
            why = "" if path.is_file() and os.access(path, os.R_OK) else "not a readable file"
        except (OSError, ValueError) as exc:  # a NUL, a name too long
            why = f"cannot be used: {exc}"
        if why:
            source = str(sources[f"idgen.{name}"])
            problems.append(SettingsProblem(f"idgen.{name}", source, f"{given}: {why}"))
    return problems


def _unwritable(path: Path) -> str:
    if "\x00" in str(path):  # pathlib answers False for it; open() raises ValueError
        return "not a valid path (it holds a NUL character)"
    if path.is_dir():
        return "is a directory"
    if path.exists():
        return "" if os.access(path, os.W_OK) else "not writable"
    parent = path.parent
    if not parent.is_dir():
        return f"directory does not exist ({parent})"
    return "" if os.access(parent, os.W_OK | os.X_OK) else f"directory not writable ({parent})"
