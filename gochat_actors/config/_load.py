"""``load_settings``: defaults < TOML file < environment < overrides, every problem at once."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import EnvSettingsSource, TomlConfigSettingsSource

from .._exceptions import SettingsError, SettingsProblem
from ._settings import ENV_NESTED_DELIMITER, ENV_PREFIX, Settings
from ._sources import DEFAULT, OVERRIDE, SettingSource

__all__ = ["CONFIG_ENV_VAR", "load_settings"]

CONFIG_ENV_VAR = "GOCHAT_CONFIG"
"""The environment variable naming the TOML file when ``load_settings`` gets no path."""

Path_ = tuple[str, ...]
_LIST_HINT = " (in the environment, give a JSON value or comma-separated items)"


def load_settings(path: str | os.PathLike[str] | None = None, /, **overrides: Any) -> Settings:
    """Load the settings from every source; later wins, per field.

    1. the models' defaults (the embedded, serverless configuration);
    2. the TOML file ``path``, or the file named by ``$GOCHAT_CONFIG`` when ``path`` is None;
    3. the environment, ``GOCHAT_<SECTION>__<FIELD>`` (case-insensitive; list values as
       JSON or comma-separated);
    4. ``overrides``: one keyword per section, a mapping (merged per field) or a section
       model (its explicitly set fields).

    Raises :class:`~gochat_actors.SettingsError` listing every problem (unknown keys,
    bad types, bad URLs, out-of-range ports, a missing file...), each with its field path
    and source. Use :func:`settings_sources` to ask where each value came from.

    Example::

        settings = load_settings("chat.toml", http={"port": 0})
        settings.db.primary.scheme     # 'mysql+aiomysql' (from the file, say)
        settings.http.port             # 0 (override)
    """
    problems: list[SettingsProblem] = []
    layers: list[tuple[Mapping[str, Any], Callable[[Path_], SettingSource]]] = []

    file_layer = _read_file(path, problems)
    if file_layer is not None:
        layers.append(file_layer)
    layers.append(_read_env(problems))
    layers.append((_overrides_as_dicts(overrides), lambda _path: OVERRIDE))

    merged: dict[str, Any] = {}
    provenance: dict[Path_, SettingSource] = {}
    for data, source_of in layers:
        _merge(merged, provenance, data, source_of)

    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, provenance))
        settings = None
    if problems or settings is None:
        raise SettingsError(problems)

    settings._sources = _effective_sources(provenance)
    return settings


# -- sources -------------------------------------------------------------------------


def _read_file(
    path: str | os.PathLike[str] | None, problems: list[SettingsProblem]
) -> tuple[Mapping[str, Any], Callable[[Path_], SettingSource]] | None:
    named_by = "argument path"
    if path is None:
        env_path = os.environ.get(CONFIG_ENV_VAR, "")
        if not env_path:
            return None
        path, named_by = env_path, f"env {CONFIG_ENV_VAR}"
    file_path = Path(path)
    source = SettingSource("file", str(file_path))
    if not file_path.is_file():
        problems.append(SettingsProblem("config", named_by, f"no such file: {file_path}"))
        return None
    try:
        data = TomlConfigSettingsSource(Settings, toml_file=file_path)()
    except tomllib.TOMLDecodeError as exc:
        problems.append(SettingsProblem("config", str(source), f"not valid TOML: {exc}"))
        return None
    except OSError as exc:
        problems.append(SettingsProblem("config", str(source), f"cannot read: {exc.strerror}"))
        return None
    return data, lambda _path: source


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' env source, except that a value that is not valid JSON is kept
    as the raw string: validation then reports it with its path (instead of aborting)."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value


def _read_env(
    problems: list[SettingsProblem],
) -> tuple[Mapping[str, Any], Callable[[Path_], SettingSource]]:
    source = _EnvSource(Settings, env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED_DELIMITER)
    try:
        data = source()
    except Exception as exc:  # pydantic_settings.SettingsError and friends
        problems.append(SettingsProblem("env", f"env {ENV_PREFIX}*", str(exc)))
        data = {}
    actual_names = {name.lower(): name for name in os.environ}

    def source_of(path: Path_) -> SettingSource:
        # the most specific variable that exists: GOCHAT_DB__POOL_SIZE, else GOCHAT_DB
        for depth in range(len(path), 0, -1):
            wanted = (ENV_PREFIX + ENV_NESTED_DELIMITER.join(path[:depth])).lower()
            if wanted in actual_names:
                return SettingSource("env", actual_names[wanted])
        return SettingSource("env", (ENV_PREFIX + ENV_NESTED_DELIMITER.join(path)).upper())

    return data, source_of


def _overrides_as_dicts(overrides: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, BaseModel):
            # a section model: only what was set explicitly, so it merges per field
            out[key] = {name: getattr(value, name) for name in value.model_fields_set}
        else:
            out[key] = value
    return out


# -- merging and provenance ----------------------------------------------------------


def _merge(
    merged: dict[str, Any],
    provenance: dict[Path_, SettingSource],
    data: Mapping[str, Any],
    source_of: Callable[[Path_], SettingSource],
) -> None:
    for section, value in data.items():
        if isinstance(value, Mapping):
            target = merged.get(section)
            if not isinstance(target, dict):
                target = merged[section] = {}
                _forget(provenance, (section,))
            for field, field_value in value.items():
                target[field] = field_value
                _forget(provenance, (section, field))
                provenance[(section, field)] = source_of((section, field))
        else:
            merged[section] = value
            _forget(provenance, (section,))
            provenance[(section,)] = source_of((section,))


def _forget(provenance: dict[Path_, SettingSource], prefix: Path_) -> None:
    for key in [k for k in provenance if k[: len(prefix)] == prefix]:
        del provenance[key]


def _source_for(provenance: Mapping[Path_, SettingSource], loc: Path_) -> SettingSource:
    for depth in range(len(loc), 0, -1):
        found = provenance.get(loc[:depth])
        if found is not None:
            return found
    # an error about a whole section given field by field (e.g. an unknown section)
    for key, source in provenance.items():
        if key[: len(loc)] == loc:
            return source
    return DEFAULT


def _effective_sources(provenance: Mapping[Path_, SettingSource]) -> dict[str, SettingSource]:
    out: dict[str, SettingSource] = {}
    for section_name, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        for field_name in model.model_fields:
            out[f"{section_name}.{field_name}"] = _source_for(
                provenance, (section_name, field_name)
            )
    return out


def _problems_from(
    exc: ValidationError, provenance: Mapping[Path_, SettingSource]
) -> list[SettingsProblem]:
    problems: list[SettingsProblem] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(str(part) for part in error["loc"])
        kind = error["type"]
        message = error["msg"]
        ctx = error.get("ctx") or {}
        if kind == "gochat_cross_field" and loc:
            # Report it at the first of the fields the user set, with where they were set.
            paths = [(*loc, name) for name in ctx.get("fields", ())] or [loc]
            given = [p for p in paths if _source_for(provenance, p) != DEFAULT] or paths[:1]
            seen = dict.fromkeys(str(_source_for(provenance, p)) for p in given)
            problems.append(SettingsProblem(".".join(given[0]), ", ".join(seen), message))
            continue
        source = _source_for(provenance, loc)
        if kind == "extra_forbidden":
            message = "unknown section" if len(loc) == 1 else "unknown key"
        elif source.kind == "env" and kind in ("list_type", "tuple_type", "dict_type"):
            message += _LIST_HINT
        elif kind == "model_type" and len(loc) == 1:
            message = "must be a table of settings (a [section] in TOML)"
        problems.append(SettingsProblem(".".join(loc) or "settings", str(source), message))
    return problems
