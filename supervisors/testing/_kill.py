"""Kill a child of a running tree by path, as a chaos test would."""

from __future__ import annotations

from .._child import ChildHandle
from .._exceptions import ChildNotFound, Killed
from .._supervisor import Supervisor

__all__ = ["find_handle", "kill"]


def _running(sup: Supervisor, path: str) -> ChildHandle | None:
    """The running incarnation at ``path``; ``None`` while it (or a supervisor above it)
    is between incarnations. Raises :class:`ChildNotFound` for a path that names no
    child."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ChildNotFound("an empty path names no child")
    current = sup
    for depth, part in enumerate(parts):
        handle = current.child_handle(part)  # ChildNotFound for an unknown id
        where = "/".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if handle is None or handle.finished:
            if not last and handle is not None and handle.child.spec.kind != "supervisor":
                raise ChildNotFound(f"child {where!r} is not a supervisor")
            return None
        if last:
            return handle
        if handle.subtree is None:
            if handle.child.spec.kind == "supervisor":
                return None  # starting or stopping: its children are not there now
            raise ChildNotFound(f"child {where!r} is not a supervisor")
        current = handle.subtree
    raise AssertionError("unreachable")  # pragma: no cover


def find_handle(sup: Supervisor, path: str) -> ChildHandle:
    """The running incarnation at ``path`` (``"db/replica-1"``) below ``sup``.

    Raises :class:`~supervisors.ChildNotFound` when no child has that path or when it is
    not running now.
    """
    handle = _running(sup, path)
    if handle is None:
        raise ChildNotFound(f"child {path!r} is not running")
    return handle


def kill(sup: Supervisor, path: str, exc: Exception | None = None) -> bool:
    """Make the child at ``path`` die of ``exc`` (default :class:`~supervisors.Killed`).

    The child is cancelled (its ``finally`` blocks run) and its supervisor sees it
    fail with ``exc``, exactly as if it had raised it: restart rules apply. Returns
    ``False`` if it was already stopping or dead, or between incarnations (waiting out
    its backoff); raises :class:`~supervisors.ChildNotFound` if no child has that path.

    ``exc`` must be an :class:`Exception` (``TypeError`` otherwise): a kill is a
    failure, and the runtime restarts on failures only. ``KeyboardInterrupt``,
    ``SystemExit`` and ``trio.Cancelled`` are not failures but control flow that passes
    through supervisors untouched; trio delivers a real Ctrl-C to the main task, not to
    a child, so test that with a real signal (``signal.raise_signal``).

    Example::

        kill(sup, "db/replica-1", ConnectionError("chaos"))
    """
    if exc is not None and not isinstance(exc, Exception):
        raise TypeError(
            f"kill() takes an Exception, got {type(exc).__name__}: only failures are "
            "injected (BaseExceptions are control flow the runtime passes through)"
        )
    handle = _running(sup, path)
    if handle is None:
        return False
    return handle.inject(exc if exc is not None else Killed(f"killed {path!r}"))
