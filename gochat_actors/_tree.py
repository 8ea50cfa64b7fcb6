"""The root of the supervision tree the current child runs in."""

from __future__ import annotations

from supervisors import Supervisor, current_child

__all__ = ["tree_root"]


def tree_root(what: str) -> Supervisor:
    """The root supervisor above the current child (walking up through nested ones).

    Raises ``RuntimeError`` naming ``what`` outside a supervised child.

    Example::

        root = tree_root("RuntimeMetrics")   # inside a child
        snapshot = root.snapshot()
    """
    try:
        handle = current_child()
    except RuntimeError:
        raise RuntimeError(
            f"{what} with supervisor=None serves the tree it runs in: run its spec() in a "
            "supervisor, or pass supervisor="
        ) from None
    sup = handle.supervisor
    while sup.parent is not None:
        sup = sup.parent.supervisor
    return sup
