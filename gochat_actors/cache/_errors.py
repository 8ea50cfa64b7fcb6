"""Redis (coredis/anyio) exceptions translated at the edge into the cache's.

Imported only by the Redis backends, so importing :mod:`gochat_actors` loads no driver.
"""

from __future__ import annotations

from .._exceptions import CacheError, CacheTimeout, CacheUnavailable, GochatError
from .._redis import DRIVER_ERRORS
from .._redis import translate as translate_redis

__all__ = ["DRIVER_ERRORS", "translate"]


def translate(exc: Exception, what: str) -> GochatError:
    """The cache's exception for the driver's ``exc`` raised by ``what`` (raise it
    ``from exc``): :class:`~gochat_actors.CacheUnavailable`,
    :class:`~gochat_actors.CacheTimeout` or :class:`~gochat_actors.CacheError`.

    Example::

        try:
            return await client.get(key)
        except DRIVER_ERRORS as exc:
            raise translate(exc, "GET") from exc
    """
    return translate_redis(
        exc, what, unavailable=CacheUnavailable, timeout=CacheTimeout, error=CacheError
    )
