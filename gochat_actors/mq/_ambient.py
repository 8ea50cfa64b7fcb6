"""The broker of the service code runs in: what a consumer made without settings uses."""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from supervisors import Supervisor, current_child

from ._connect import Connection

__all__ = ["service_connection", "serving_connection", "using_service_connection"]

_SERVICE: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "gochat_service_mq", default=None
)

# A service's root supervisor -> its connection. The tree, not the context, says which
# service a child belongs to: trio gives a task a copy of its *starter's* context, and
# a child added by a task that began before the service (a worker of the test's own)
# would not see the service's binding.
_TREES: weakref.WeakKeyDictionary[Supervisor, Connection] = weakref.WeakKeyDictionary()


def service_connection() -> Connection | None:
    """How the service this task runs in reaches its broker (its producer's settings,
    bridge and memory broker), or None outside ``open_service``.

    Inside a supervised child, the service whose tree holds the child; else (and for
    the children a service starts with) the one bound by :func:`using_service_connection`.
    """
    try:
        sup: Supervisor | None = current_child().supervisor
    except RuntimeError:  # not in a supervised child
        sup = None
    while sup is not None:
        found = _TREES.get(sup)
        if found is not None:
            return found
        parent = sup.parent
        sup = parent.supervisor if parent is not None else None
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


@contextmanager
def serving_connection(root: Supervisor, conn: Connection) -> Iterator[None]:
    """Within the block, a consumer made without ``settings=`` running anywhere in the
    tree of ``root`` reaches ``conn``, whichever task added it.

    Example::

        async with open_supervisor(specs) as sup:
            with serving_connection(sup, producer.connection): ...
    """
    _TREES[root] = conn
    try:
        yield
    finally:
        _TREES.pop(root, None)
