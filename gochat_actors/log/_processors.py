"""structlog processors of the library: plain callables ``(logger, method, event_dict)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import SecretStr
from structlog.typing import EventDict, WrappedLogger

from .._dsn import Dsn, is_secret_name, mask_urls

__all__ = ["SECRET_KEYS", "add_service", "is_secret_key", "order_keys", "redact_secrets"]

SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "token",
        "auth",
        "authorization",
        "apikey",
        "api_key",
        "credential",
        "private_key",
        "cookie",
        "sessionid",
    }
)
"""Secret key names: these, and every key :func:`is_secret_key` accepts (``db_password``,
``accessToken``, ``x-api-key``, ``client_secret``...)."""

_MASKED = "**********"
_FIRST_KEYS = ("timestamp", "level", "event", "service", "trace_id", "span_id", "logger")
_MAX_DEPTH = 32  # deeper than this, a value is masked as its (masked) repr
_CLEAR = (int, float, bool, type(None))  # never a credential, shown under any key


def is_secret_key(key: str) -> bool:
    """Whether values logged under ``key`` are masked: a word of the key (split at
    ``_ - .`` and camelCase) contains ``password``, ``passwd``, ``passphrase``, ``secret``,
    ``apikey``, ``authorization``, ``credential`` or ``privatekey``, is ``pwd``, ``auth``
    or ``sessionid``, or ends with ``token`` or ``cookie``.

    Numbers, booleans and None are shown under any key: no credential is a number,
    while a lock's fencing token (``token=42``) and ``max_tokens=100`` are.

    Example::

        >>> [is_secret_key(k) for k in ("db_password", "accessToken", "fence", "tokens")]
        [True, True, False, False]
    """
    return is_secret_name(key)


def add_service(service: str) -> Callable[[WrappedLogger, str, EventDict], EventDict]:
    """A processor that adds ``service`` to every event (unless the event sets one).

    Example::

        processors = [add_service("chat-gateway"), JSONRenderer()]
    """

    def processor(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def _field(key: str, value: Any, depth: int, path: frozenset[int]) -> Any:
    if isinstance(value, _CLEAR):
        return value
    if is_secret_name(key) and not (isinstance(value, str) and not value):
        return _MASKED
    return _redact(value, depth, path)


def _redact(value: Any, depth: int, path: frozenset[int]) -> Any:
    if isinstance(value, str):
        return mask_urls(value)
    if isinstance(value, _CLEAR):
        return value
    if isinstance(value, (SecretStr, Dsn)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "surrogateescape")
        masked = mask_urls(text)
        return value if masked == text else masked.encode("utf-8", "surrogateescape")
    if depth <= 0 or id(value) in path:
        return _redact_repr(value)
    inner, depth = path | {id(value)}, depth - 1
    if isinstance(value, Mapping):
        # keys are strings like any other (a status per server URL): masked too
        return {_redact(k, depth, inner): _field(str(k), v, depth, inner) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        if isinstance(value, tuple) and hasattr(value, "_make") and hasattr(value, "_fields"):
            # a namedtuple stays one, and its field names are keys (password=...)
            fields = zip(value._fields, value, strict=True)
            return value._make(_field(name, v, depth, inner) for name, v in fields)
        items = [_redact(v, depth, inner) for v in value]
        if isinstance(value, list):
            return items
        if isinstance(value, tuple):
            return tuple(items)
        return frozenset(items) if isinstance(value, frozenset) else set(items)
    return _redact_repr(value)


def _redact_repr(value: Any) -> Any:
    # What the renderers would print (JSON and console both fall back to repr): masked
    # when it shows a secret, else the object itself, untouched.
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} (repr failed)>"
    masked = mask_urls(text)
    return value if masked == text else masked


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Mask secrets: values of secret-named keys (:func:`is_secret_key`; numbers stay
    in clear), URL passwords and secret query parameters in any string (tracebacks
    included), ``SecretStr`` and ``Dsn`` values, and any other object whose ``repr``
    (what the renderers print) shows one, such as an exception; at any depth of dicts,
    lists, tuples, sets and bytes (dict keys included; a namedtuple's fields are keys).

    Example::

        redact_secrets(None, "info", {"event": "connect", "password": "x"})
        # {'event': 'connect', 'password': '**********'}
    """
    for key, value in event_dict.items():
        event_dict[key] = _field(key, value, _MAX_DEPTH, frozenset())
    return event_dict


def order_keys(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Put ``timestamp, level, event, service, trace_id, span_id, logger`` first (for human eyes).

    Example::

        order_keys(None, "info", {"x": 1, "event": "e", "level": "info"})
        # {'level': 'info', 'event': 'e', 'x': 1}
    """
    ordered = {k: event_dict[k] for k in _FIRST_KEYS if k in event_dict}
    ordered.update(event_dict)
    return ordered
