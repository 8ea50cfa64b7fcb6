"""The Redis cache backend: coredis, natively on trio (anyio), no asyncio bridge.

This module imports coredis; it is imported only when a ``redis://`` URL is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import coredis
import coredis.exceptions

from .._checks import check_key_text, ttl_ms
from .._exceptions import CacheUnavailable
from ._errors import DRIVER_ERRORS, translate

__all__ = ["RedisCache"]


class RedisCache:
    """The Redis :class:`CacheBackend` over one coredis client; ``key_prefix`` on every key.

    Example::

        async with open_redis_cache("redis://127.0.0.1:6379/0", key_prefix="chat:") as backend:
            await backend.set("user:42", b"ann", 60.0)   # stored as chat:user:42
    """

    def __init__(self, client: coredis.Redis[bytes], *, key_prefix: str = "") -> None:
        self._client = client
        self._prefix = key_prefix
        self._closed = False

    def _live(self, what: str) -> coredis.Redis[bytes]:
        if self._closed:
            raise CacheUnavailable(f"Redis {what}: the connection is closed")
        return self._client

    async def get(self, key: str) -> bytes | None:
        client = self._live("GET")
        check_key_text(key)
        try:
            return await client.get(self._prefix + key)
        except DRIVER_ERRORS as exc:
            raise translate(exc, "GET") from exc

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        client = self._live("MGET")
        if not keys:
            return []
        for key in keys:
            check_key_text(key)
        try:
            return list(await client.mget([self._prefix + k for k in keys]))
        except DRIVER_ERRORS as exc:
            raise translate(exc, "MGET") from exc

    async def set(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        client = self._live("SET")
        check_key_text(key)
        px = None if ttl is None else ttl_ms(ttl)
        try:
            return bool(
                await client.set(self._prefix + key, value, px=px, condition=_NX if nx else None)
            )
        except DRIVER_ERRORS as exc:
            raise translate(exc, "SET") from exc

    async def delete(self, keys: Sequence[str]) -> int:
        client = self._live("DEL")
        if not keys:
            return 0
        for key in keys:
            check_key_text(key)
        try:
            return await client.delete([self._prefix + k for k in keys])
        except DRIVER_ERRORS as exc:
            raise translate(exc, "DEL") from exc

    async def incr(self, key: str, amount: int = 1) -> int:
        client = self._live("INCRBY")
        check_key_text(key)
        try:
            return await client.incrby(self._prefix + key, amount)
        except DRIVER_ERRORS as exc:
            raise translate(exc, "INCRBY") from exc

    async def ttl(self, key: str) -> float | None:
        client = self._live("PTTL")
        check_key_text(key)
        try:
            ms = await client.pttl(self._prefix + key)
        except DRIVER_ERRORS as exc:
            raise translate(exc, "PTTL") from exc
        if ms == -2:
            return None
        return math.inf if ms == -1 else ms / 1000

    async def ping(self) -> None:
        client = self._live("PING")
        try:
            await client.ping()
        except DRIVER_ERRORS as exc:
            raise translate(exc, "PING") from exc

    async def aclose(self) -> None:
        self._closed = True
        self._client.connection_pool.disconnect()


_NX: Any = coredis.PureToken.NX
