"""Names of the children of one tree, scoped to that tree (never a module global)."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

import trio

from ._exceptions import ChildNotFound, SupervisorNotRunning

if TYPE_CHECKING:
    from ._child import Child

__all__ = ["Registry", "current_registry"]


class Registry:
    """Maps each child's path (``"db/replica-1"``) to its record, for one tree.

    A bare id (``"replica-1"``) also resolves when exactly one child in the tree has it.
    """

    __slots__ = ("_by_path", "_changed")

    def __init__(self) -> None:
        self._by_path: dict[str, Child] = {}
        self._changed: trio.Event | None = None

    def add(self, child: Child) -> None:
        self._by_path[child.path] = child
        self._notify()

    def remove(self, child: Child) -> None:
        if self._by_path.get(child.path) is child:
            del self._by_path[child.path]
            self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_changed(self) -> None:
        """Wait until a child is added or removed."""
        if self._changed is None:
            self._changed = trio.Event()
        await self._changed.wait()

    def get(self, name: str) -> Child | None:
        """The child at path ``name`` (or with that unique id), else ``None``."""
        child = self._by_path.get(name)
        if child is not None or "/" in name:
            return child
        matches = [c for path, c in self._by_path.items() if path.rsplit("/", 1)[-1] == name]
        if len(matches) > 1:
            paths = ", ".join(sorted(c.path for c in matches))
            raise ChildNotFound(f"{name!r} is ambiguous in this tree: use a path ({paths})")
        return matches[0] if matches else None

    def lookup(self, name: str) -> Child:
        """Like :meth:`get` but raises :class:`ChildNotFound`."""
        child = self.get(name)
        if child is None:
            raise ChildNotFound(f"no child named {name!r} in this supervision tree")
        return child

    def paths(self) -> list[str]:
        return list(self._by_path)


_current_registry: contextvars.ContextVar[Registry | None] = contextvars.ContextVar(
    "supervisors_registry", default=None
)


def current_registry() -> Registry:
    """The registry of the tree this code runs in (inside it, or in its ``async with``)."""
    registry = _current_registry.get()
    if registry is None:
        raise SupervisorNotRunning("no supervision tree in this context")
    return registry
