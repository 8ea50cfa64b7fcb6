"""Distributed locks with renewal; ``[lock]`` settings."""

from ._settings import LockSettings

__all__ = ["LockSettings"]
