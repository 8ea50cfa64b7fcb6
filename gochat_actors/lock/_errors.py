"""Redis exceptions translated into lock errors at the edge (imports coredis: only the
Redis lock backend imports this module)."""

from __future__ import annotations

from .._exceptions import GochatError, LockError, LockUnavailable
from .._redis import DRIVER_ERRORS, translate

__all__ = ["DRIVER_ERRORS", "lock_error"]


def lock_error(exc: Exception, what: str) -> GochatError:
    """Our lock exception for the driver's ``exc``: unreachable or timed out ->
    :class:`~gochat_actors.LockUnavailable` (transient), else :class:`~gochat_actors.LockError`.

    Example::

        except DRIVER_ERRORS as exc:
            raise lock_error(exc, "lock acquire") from exc
    """
    return translate(
        exc, what, unavailable=LockUnavailable, timeout=LockUnavailable, error=LockError
    )
