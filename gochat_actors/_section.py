"""The base of every settings section, and small validators shared by sections."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "NonNegativeSeconds",
    "PositiveSeconds",
    "Section",
    "cross_field_error",
    "raise_cross_field_errors",
    "split_list",
]

PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A duration in seconds, > 0 and finite."""

NonNegativeSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A duration in seconds, >= 0 and finite."""


class Section(BaseModel):
    """Base of a settings section: immutable, unknown keys are errors; an error's text
    never repeats the value it refused (a URL's password: the messages name the part).

    Example::

        class CacheSettings(Section):
            url: str = "memory://"
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, hide_input_in_errors=True
    )


def cross_field_error(fields: tuple[str, ...], message: str) -> PydanticCustomError:
    """An error about several fields of one section, raised from a model validator.

    The loader reports it at the first field's path, with the sources of all ``fields``.

    Example::

        raise cross_field_error(("margin", "lease_ttl"), "margin must be < lease_ttl")
    """
    return PydanticCustomError("gochat_cross_field", message, {"fields": fields})


def raise_cross_field_errors(model: BaseModel, errors: Sequence[PydanticCustomError]) -> None:
    """Raise every error of ``errors`` at once (nothing when it is empty), from a model
    validator that checks several rules: each is reported, not only the first.

    Example::

        problems = []
        if self.margin >= self.lease_ttl:
            problems.append(cross_field_error(("margin", "lease_ttl"), "margin < lease_ttl"))
        raise_cross_field_errors(self, problems)
    """
    if errors:
        details = [InitErrorDetails(type=error, loc=(), input=None) for error in errors]
        raise ValidationError.from_exception_data(type(model).__name__, details)


def split_list(value: Any) -> Any:
    """Before-validator for list fields: a string is a JSON list or comma-separated items.

    Environment variables are strings; this lets ``GOCHAT_LOG__OUTPUTS=stdout,/var/log/a``
    and ``GOCHAT_LOG__OUTPUTS='["stdout"]'`` both work.

    Example::

        outputs: Annotated[tuple[str, ...], BeforeValidator(split_list)] = ("stdout",)
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            raise PydanticCustomError(
                "list_json", "not a valid JSON list (or give comma-separated items)"
            ) from None
    if not text:
        return []
    return [item.strip() for item in text.split(",") if item.strip()]
