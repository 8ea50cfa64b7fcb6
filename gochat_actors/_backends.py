"""One registry per component: its backends by URL scheme (scheme -> factory).

A component's ``_backends.py`` fills its registry; the same registry checks the URL in
its settings (:meth:`Backends.url_check`: the schemes ``check-config`` reports as
expected), picks the factory when the component starts (:meth:`Backends.factory`) and
tells the conformance tests which backends to run (:meth:`Backends.kinds`). Adding a
backend is one module and one :meth:`Backends.add` line.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ._dsn import DsnSchemes

__all__ = ["Backends"]

F = TypeVar("F")


class Backends(Generic[F]):
    """The backends of ``component``, each a factory reached by one or more schemes.

    Example::

        BACKENDS: Backends[CacheFactory] = Backends("cache")
        BACKENDS.add(memory_cache, "memory")
        BACKENDS.add(redis_cache, "redis", "rediss")
        BACKENDS.factory("rediss") is redis_cache     # True
    """

    __slots__ = ("_kinds", "component")

    def __init__(self, component: str) -> None:
        self.component = component
        self._kinds: dict[str, tuple[F, tuple[str, ...]]] = {}

    def add(self, factory: F, scheme: str, *more: str) -> None:
        """Register ``factory`` for URLs of ``scheme`` (and ``more`` schemes): the first
        scheme names the backend (its kind)."""
        schemes = (scheme, *more)
        taken = sorted(set(schemes) & set(self.schemes))
        if taken:
            raise ValueError(f"{self.component}: schemes {taken} already have a backend")
        self._kinds[scheme] = (factory, schemes)

    @property
    def schemes(self) -> tuple[str, ...]:
        """Every scheme with a backend, in registration order."""
        return tuple(s for _, schemes in self._kinds.values() for s in schemes)

    def kinds(self) -> dict[str, tuple[str, ...]]:
        """Each backend by its first scheme, with all its schemes (for the tests)."""
        return {kind: schemes for kind, (_, schemes) in self._kinds.items()}

    def factory(self, scheme: str) -> F:
        """The factory of URLs of ``scheme``; ``ValueError`` naming the known schemes."""
        for factory, schemes in self._kinds.values():
            if scheme in schemes:
                return factory
        known = ", ".join(f"{s}://" for s in self.schemes)
        raise ValueError(f"{self.component}: no backend for {scheme}:// (expected {known})")

    def url_check(self, *, allow_empty: bool = False) -> DsnSchemes:
        """The settings' URL validator: the registered schemes, and only them."""
        return DsnSchemes(*self.schemes, allow_empty=allow_empty)
