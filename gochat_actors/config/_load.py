"""``load_settings``: defaults < TOML file < environment < overrides, every problem at once."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import EnvSettingsSource, TomlConfigSettingsSource

from .._exceptions import SettingsError, SettingsProblem
from ._settings import ENV_NESTED_DELIMITER, ENV_PREFIX, Settings, record_sources
from ._source import DEFAULT, OVERRIDE, SettingSource

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
    sections: dict[str, SettingSource] = {}  # who last gave each section (for errors)
    for data, source_of in layers:
        _merge(merged, provenance, data, source_of, sections)

    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        errors += _hidden_cross_field_errors(errors, merged)
        problems.extend(_problems_from(errors, provenance, sections))
        settings = None
    if problems or settings is None:
        raise SettingsError(problems)

    record_sources(settings, _effective_sources(provenance))
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
        _check_utf8(file_path.read_bytes())
        data = TomlConfigSettingsSource(Settings, toml_file=file_path)()
    except UnicodeDecodeError as exc:
        problems.append(SettingsProblem("config", str(source), str(exc.reason)))
        return None
    except tomllib.TOMLDecodeError as exc:
        problems.append(SettingsProblem("config", str(source), f"not valid TOML: {exc}"))
        return None
    except OSError as exc:
        problems.append(SettingsProblem("config", str(source), f"cannot read: {exc.strerror}"))
        return None
    return data, lambda _path: source


def _check_utf8(raw: bytes) -> None:
    """Raise UnicodeDecodeError whose ``reason`` says where (TOML files are UTF-8)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        reason = (
            f"not UTF-8 text (TOML files must be UTF-8): byte 0x{raw[exc.start]:02x} "
            f"at line {line}, column {column}"
        )
        raise UnicodeDecodeError("utf-8", raw, exc.start, exc.end, reason) from None


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
    data = _with_unknown_env_sections(data, actual_names)

    def source_of(path: Path_) -> SettingSource:
        # the most specific variable that exists: GOCHAT_DB__POOL_SIZE, else GOCHAT_DB
        for depth in range(len(path), 0, -1):
            wanted = (ENV_PREFIX + ENV_NESTED_DELIMITER.join(path[:depth])).lower()
            if wanted in actual_names:
                return SettingSource("env", actual_names[wanted])
        return SettingSource("env", (ENV_PREFIX + ENV_NESTED_DELIMITER.join(path)).upper())

    return data, source_of


def _with_unknown_env_sections(
    data: Mapping[str, Any], actual_names: Mapping[str, str]
) -> dict[str, Any]:
    """``data`` plus the ``GOCHAT_<SECTION>__<FIELD>`` variables whose section is unknown
    (pydantic-settings reads only known ones): validation then reports each of them.
    Variables without ``__`` (``GOCHAT_CONFIG``) are not settings."""
    out = dict(data)
    prefix, delimiter = ENV_PREFIX.lower(), ENV_NESTED_DELIMITER
    for lowered, name in sorted(actual_names.items()):
        if not lowered.startswith(prefix):
            continue
        section, nested, field = lowered[len(prefix) :].partition(delimiter)
        if not nested or not section or section in Settings.model_fields:
            continue
        target = out.setdefault(section, {})
        if isinstance(target, dict):
            target[field] = os.environ[name]
    return out


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
    sections: dict[str, SettingSource],
) -> None:
    for section, value in data.items():
        sections[section] = source_of((section,))
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


def _hidden_cross_field_errors(
    errors: Sequence[ErrorDetails], merged: Mapping[str, Any]
) -> list[ErrorDetails]:
    """The rules across fields that a field error of the same section kept from running
    (a model validator runs only once every field is valid): the section is validated
    again without its invalid fields, and a rule is kept when none of its fields was
    invalid (a rule about an invalid field would be judged on the default instead)."""
    invalid: dict[str, set[str]] = {}
    for error in errors:
        if error["type"] != "gochat_cross_field" and len(error["loc"]) >= 2:
            invalid.setdefault(str(error["loc"][0]), set()).add(str(error["loc"][1]))
    found: list[ErrorDetails] = []
    for section, fields in invalid.items():
        field = Settings.model_fields.get(section)
        given = merged.get(section)
        model = field.annotation if field is not None else None
        if not isinstance(given, Mapping) or not isinstance(model, type):
            continue
        if not issubclass(model, BaseModel):
            continue
        try:
            model.model_validate({k: v for k, v in given.items() if k not in fields})
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                rule_fields = set((error.get("ctx") or {}).get("fields", ()))
                if error["type"] == "gochat_cross_field" and not rule_fields & fields:
                    error["loc"] = (section, *error["loc"])
                    found.append(error)
    return found


def _problems_from(
    errors: Sequence[ErrorDetails],
    provenance: Mapping[Path_, SettingSource],
    sections: Mapping[str, SettingSource],
) -> list[SettingsProblem]:
    problems: list[SettingsProblem] = []
    for error in errors:
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
        if source == DEFAULT and len(loc) == 1 and loc[0] in sections:
            source = sections[loc[0]]  # a section given with no field: foo={}, [foo]
        if kind == "extra_forbidden":
            message = "unknown section" if len(loc) == 1 else "unknown key"
        elif source.kind == "env" and kind in ("list_type", "tuple_type", "dict_type"):
            message += _LIST_HINT
        elif kind == "model_type" and len(loc) == 1:
            message = "must be a table of settings (a [section] in TOML)"
        problems.append(SettingsProblem(".".join(loc) or "settings", str(source), message))
    return problems
