"""Kill a child of a running tree by path, as a chaos test would."""

from __future__ import annotations

from .._child import ChildHandle
from .._exceptions import ChildNotFound, Killed
from .._supervisor import Supervisor

__all__ = ["find_handle", "kill"]


def find_handle(sup: Supervisor, path: str) -> ChildHandle:
    """The running incarnation at ``path`` (``"db/replica-1"``) below ``sup``."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ChildNotFound("an empty path names no child")
    current = sup
    for depth, part in enumerate(parts):
        handle = current.child_handle(part)
        if handle is None or handle.finished:
            raise ChildNotFound(f"child {'/'.join(parts[: depth + 1])!r} is not running")
        if depth == len(parts) - 1:
            return handle
        if handle.subtree is None:
            raise ChildNotFound(f"child {'/'.join(parts[: depth + 1])!r} is not a supervisor")
        current = handle.subtree
    raise AssertionError("unreachable")  # pragma: no cover


def kill(sup: Supervisor, path: str, exc: BaseException | None = None) -> bool:
    """Make the child at ``path`` die of ``exc`` (default :class:`~supervisors.Killed`).

    The child is cancelled (its ``finally`` blocks run) and its supervisor sees it
    fail with ``exc``, exactly as if it had raised it: restart rules apply. Returns
    ``False`` if it was already stopping or dead.

    Example::

        kill(sup, "db/replica-1", ConnectionError("chaos"))
    """
    handle = find_handle(sup, path)
    return handle.inject(exc if exc is not None else Killed(f"killed {path!r}"))
