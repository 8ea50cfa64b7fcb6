"""``[log]``: level, format and outputs of the structured logs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError
from pydantic_settings import NoDecode

from .._section import Section, split_list

__all__ = ["LogFormat", "LogLevel", "LogSettings"]

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["json", "console"]


def _normalize_level(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().lower()
        return "warning" if value == "warn" else value
    return value


def _check_outputs(outputs: tuple[str, ...]) -> tuple[str, ...]:
    if not outputs:
        raise PydanticCustomError("outputs_empty", "needs at least one output")
    if any(not o.strip() for o in outputs):
        raise PydanticCustomError("outputs_blank", "an output must not be blank")
    return tuple(dict.fromkeys(outputs))  # drop duplicates, keep order


class LogSettings(Section):
    """The ``[log]`` section.

    Example::

        LogSettings(level="debug", format="console", outputs=("stderr", "/var/log/chat.log"))
    """

    level: Annotated[LogLevel, BeforeValidator(_normalize_level)] = Field(
        default="info", description="Minimum level: debug, info, warning, error, critical."
    )
    format: LogFormat = Field(
        default="json", description="`json` (one JSON object per line) or `console` (for humans)."
    )
    outputs: Annotated[
        tuple[str, ...], NoDecode, BeforeValidator(split_list), AfterValidator(_check_outputs)
    ] = Field(
        default=("stdout",),
        description="Where lines go: `stdout`, `stderr`, or file paths (appended); several OK.",
    )
