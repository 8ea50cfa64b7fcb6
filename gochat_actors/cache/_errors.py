"""Redis (coredis/anyio) exceptions translated at the edge into ours.

Imported only by the Redis backends, so importing :mod:`gochat_actors` loads no driver.
"""

from __future__ import annotations

import anyio
import coredis.exceptions

from .._dsn import mask_urls
from .._exceptions import CacheError, CacheTimeout, CacheUnavailable, GochatError

__all__ = ["DRIVER_ERRORS", "translate"]

DRIVER_ERRORS: tuple[type[Exception], ...] = (
    coredis.exceptions.RedisError,
    OSError,  # TimeoutError is one too
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)
"""What a Redis call may raise that :func:`translate` maps (anything else is a bug: not caught)."""

_UNAVAILABLE = (
    coredis.exceptions.ConnectionError,  # ProtocolError, BusyLoadingError included
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


def translate(
    exc: Exception,
    what: str,
    *,
    unavailable: type[GochatError] = CacheUnavailable,
    timeout: type[GochatError] = CacheTimeout,
    error: type[GochatError] = CacheError,
) -> GochatError:
    """Our exception for the driver's ``exc`` raised by ``what`` (raise it ``from exc``).

    Example::

        try:
            return await client.get(key)
        except DRIVER_ERRORS as exc:
            raise translate(exc, "GET") from exc
    """
    detail = mask_urls(str(exc)) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return timeout(f"Redis {what} timed out: {detail}")
    if isinstance(exc, _UNAVAILABLE):
        return unavailable(f"Redis {what} failed, server unreachable: {detail}")
    return error(f"Redis {what} failed: {detail}")
