"""The broker of the service code runs in: what a consumer made without settings uses."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from ._connect import Connection

__all__ = ["service_connection", "using_service_connection"]

_SERVICE: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "gochat_service_mq", default=None
)


def service_connection() -> Connection | None:
    """How the service this task runs in reaches its broker (its producer's settings,
    bridge and memory broker), or None outside ``open_service``."""
    return _SERVICE.get()


@contextmanager
def using_service_connection(conn: Connection) -> Iterator[None]:
    """Within the block (and in the tasks started from it: the service's tree, the
    children a caller adds), a consumer made without ``settings=`` reaches ``conn``.

    Example::

        with using_service_connection(producer.connection):
            async with open_supervisor(specs) as sup: ...
    """
    token = _SERVICE.set(conn)
    try:
        yield
    finally:
        _SERVICE.reset(token)
