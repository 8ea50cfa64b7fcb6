"""Redis cache (coredis) and the in-memory cache; ``[cache]`` settings."""

from ._settings import CacheSettings

__all__ = ["CacheSettings"]
