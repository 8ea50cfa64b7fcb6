"""Kill a child of a running tree by path, as a chaos test would."""

from __future__ import annotations

from .._child import ChildHandle
from .._exceptions import ChildNotFound, Killed
from .._supervisor import Supervisor

__all__ = ["find_handle", "kill"]


def _running_handle(sup: Supervisor, path: str) -> ChildHandle | None:
    """The running incarnation at ``path``; ``None`` if that child is not running (or a
    supervisor above it is not); :class:`ChildNotFound` if the path names no child."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ChildNotFound("an empty path names no child")
    current = sup
    for depth, part in enumerate(parts):
        handle = current.child_handle(part)  # ChildNotFound for an unknown id
        if handle is None or handle.finished:
            return None
        if depth == len(parts) - 1:
            return handle
        if handle.subtree is None:
            if handle.child.spec.kind == "supervisor":
                return None  # a supervisor not running yet: nothing runs below it
            raise ChildNotFound(f"child {'/'.join(parts[: depth + 1])!r} is not a supervisor")
        current = handle.subtree
    raise AssertionError("unreachable")  # pragma: no cover


def find_handle(sup: Supervisor, path: str) -> ChildHandle:
    """The running incarnation at ``path`` (``"db/replica-1"``) below ``sup``.

    Raises :class:`~supervisors.ChildNotFound` if there is none.
    """
    handle = _running_handle(sup, path)
    if handle is None:
        raise ChildNotFound(f"child {path!r} is not running")
    return handle


def kill(sup: Supervisor, path: str, exc: BaseException | None = None) -> bool:
    """Make the child at ``path`` die of ``exc`` (default :class:`~supervisors.Killed`).

    The child is cancelled (its ``finally`` blocks run) and its supervisor sees it
    fail with ``exc``, exactly as if it had raised it: restart rules apply. Returns
    ``False`` if it is not running (already stopping, dead, waiting out its backoff,
    or under a supervisor that is itself down); raises
    :class:`~supervisors.ChildNotFound` for a path that names no child.

    Example::

        kill(sup, "db/replica-1", ConnectionError("chaos"))
    """
    handle = _running_handle(sup, path)
    if handle is None:
        return False
    return handle.inject(exc if exc is not None else Killed(f"killed {path!r}"))
