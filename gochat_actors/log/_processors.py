"""structlog processors of the library: plain callables ``(logger, method, event_dict)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import SecretStr
from structlog.typing import EventDict, WrappedLogger

from .._dsn import Dsn, mask_urls

__all__ = ["SECRET_KEYS", "add_service", "order_keys", "redact_secrets"]

SECRET_KEYS = frozenset(
    {"password", "passwd", "pwd", "secret", "token", "sasl_password", "authorization", "api_key"}
)
"""Event keys whose values are always masked, whatever they hold."""

_MASKED = "**********"
_FIRST_KEYS = ("timestamp", "level", "event", "service", "trace_id", "logger")


def add_service(service: str) -> Callable[[WrappedLogger, str, EventDict], EventDict]:
    """A processor that adds ``service`` to every event (unless the event sets one).

    Example::

        processors = [add_service("chat-gateway"), JSONRenderer()]
    """

    def processor(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def _redact(key: str, value: Any, depth: int) -> Any:
    if key.lower() in SECRET_KEYS and value not in (None, ""):
        return _MASKED
    if isinstance(value, str):
        return mask_urls(value)
    if isinstance(value, (SecretStr, Dsn)):
        return str(value)
    if depth > 0 and isinstance(value, Mapping):
        return {k: _redact(str(k), v, depth - 1) for k, v in value.items()}
    if depth > 0 and isinstance(value, (list, tuple)):
        return [_redact("", v, depth - 1) for v in value]
    return value


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Mask secrets: values of secret-named keys, passwords inside URLs (in any string,
    tracebacks included), ``SecretStr`` and ``Dsn`` values; two levels into dicts/lists.

    Example::

        redact_secrets(None, "info", {"event": "connect", "password": "x"})
        # {'event': 'connect', 'password': '**********'}
    """
    for key, value in event_dict.items():
        event_dict[key] = _redact(key, value, 2)
    return event_dict


def order_keys(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Put ``timestamp, level, event, service, trace_id, logger`` first (for human eyes).

    Example::

        order_keys(None, "info", {"x": 1, "event": "e", "level": "info"})
        # {'level': 'info', 'event': 'e', 'x': 1}
    """
    ordered = {k: event_dict[k] for k in _FIRST_KEYS if k in event_dict}
    ordered.update(event_dict)
    return ordered
