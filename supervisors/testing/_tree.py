"""Where a chaos child runs: its tree's registry and root, and path globs."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._child import _current_child
from .._registry import Registry, current_registry

if TYPE_CHECKING:
    from .._supervisor import Supervisor

__all__ = ["matches", "tree_registry", "tree_root"]


def tree_registry() -> Registry:
    """The registry of the tree the current child runs in (or of the current context).

    Taken from the child's own supervisor, not the context, so a chaos child started
    with ``start_child`` from outside its tree still sees that tree.
    """
    handle = _current_child.get()
    if handle is not None:
        return handle.supervisor._registry
    return current_registry()


def tree_root() -> Supervisor:
    """The root supervisor of the tree the current child runs in."""
    handle = _current_child.get()
    if handle is None:
        raise RuntimeError("not running inside a supervised child")
    sup = handle.supervisor
    while sup.parent is not None:
        sup = sup.parent.supervisor
    return sup


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    """``*`` and ``?`` stay within one path level; ``**`` crosses levels; ``[...]`` as in
    fnmatch."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":  # a leading "]" is literal
                j += 1
            end = pattern.find("]", j)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def matches(path: str, patterns: Sequence[str], *, subtree: bool = False) -> bool:
    """Whether a glob in ``patterns`` matches ``path`` (or, with ``subtree``, one of its
    ancestors: ``"g"`` then covers ``"g/c2"``)."""
    candidates = [path]
    if subtree:
        parts = path.split("/")
        candidates.extend("/".join(parts[:k]) for k in range(1, len(parts)))
    return any(_compile(p).fullmatch(c) for p in patterns for c in candidates)
