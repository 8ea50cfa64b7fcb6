"""Redis cache (coredis, natively on trio) and the in-memory cache; ``[cache]`` settings.

Example::

    from gochat_actors.cache import JSON, Cache

    cache = Cache(settings.cache, metrics=metrics)      # run cache.spec() in the tree
    await cache.set("user:42", {"name": "ann"}, ttl=60.0, codec=JSON)
    user = await cache.get("user:42", codec=JSON)       # CacheMiss when absent
"""

from .._labels import PrefixLabels
from . import _metrics  # noqa: F401  (the cache's metric families, for Metrics)
from ._backends import open_redis_cache
from ._cache import Cache
from ._codec import BYTES, JSON, STR, BytesCodec, Codec, JsonCodec, StrCodec
from ._memory import MemoryCache, MemoryStore
from ._protocol import CacheBackend, CacheConnector
from ._settings import CacheSettings

__all__ = [
    "BYTES",
    "JSON",
    "STR",
    "BytesCodec",
    "Cache",
    "CacheBackend",
    "CacheConnector",
    "CacheSettings",
    "Codec",
    "JsonCodec",
    "MemoryCache",
    "MemoryStore",
    "PrefixLabels",
    "StrCodec",
    "open_redis_cache",
]
