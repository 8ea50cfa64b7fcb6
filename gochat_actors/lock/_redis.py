"""The Redis lock backend: three Lua scripts, each one atomic round trip.

The lock's value is ``"<token>:<owner>"``; its fence counter is a separate key that
never expires, so tokens keep increasing across holders. This module imports coredis;
it is imported only when a ``redis://`` URL is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import coredis
from coredis.exceptions import NoScriptError

from .._checks import check_key_text, ttl_ms
from .._exceptions import LockError, LockUnavailable
from .._redis_cluster import colocated_key
from ._errors import DRIVER_ERRORS, lock_error
from ._protocol import AcquireResult, lock_keys

__all__ = ["ACQUIRE", "RELEASE", "RENEW", "RedisLockBackend", "cluster_lock_keys"]

ACQUIRE = """
-- KEYS[1] lock, KEYS[2] fence counter; ARGV[1] owner, ARGV[2] ttl (ms)
-- -> {1, token} acquired (or already ours: TTL reset) | {0, pttl} held by another
local held = redis.call('GET', KEYS[1])
if held then
  local sep = string.find(held, ':', 1, true)
  if sep and string.sub(held, sep + 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, tonumber(string.sub(held, 1, sep - 1))}
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'NX', 'PX', ARGV[2])
return {1, token}
"""

RENEW = """
-- compare-and-pexpire: KEYS[1] lock; ARGV[1] owner, ARGV[2] ttl (ms) -> 1 | 0
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, -(#ARGV[1] + 1)) == ':' .. ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE = """
-- compare-and-delete: KEYS[1] lock; ARGV[1] owner -> 1 | 0
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, -(#ARGV[1] + 1)) == ':' .. ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def cluster_lock_keys(key_prefix: str, name: str) -> tuple[str, str]:
    """:func:`lock_keys` on a Redis Cluster: the same two keys whenever they share a hash
    slot (the ``{name}`` tag, or a tag in ``key_prefix``), else the fence counter gets a
    numbered suffix that puts it in the lock's slot (a name starting with ``}``, a prefix
    with an empty ``{}``), so the scripts never touch two slots.

    Example::

        >>> cluster_lock_keys("chat:", "room:42")
        ('chat:lock:{room:42}', 'chat:lock:{room:42}:fence')
    """
    key, _ = lock_keys(key_prefix, name)
    return key, colocated_key(key, ":fence")


_SHA = {script: hashlib.sha1(script.encode()).hexdigest() for script in (ACQUIRE, RENEW, RELEASE)}


class RedisLockBackend:
    """The Redis :class:`LockBackend` over one coredis client; ``key_prefix`` on every key.

    Example::

        async with open_redis_locks("redis://127.0.0.1:6379/0") as backend:
            result = await backend.acquire("room:42", owner, 10.0)
    """

    def __init__(
        self,
        client: coredis.Redis[bytes],
        *,
        key_prefix: str = "",
        keys: Callable[[str, str], tuple[str, str]] = lock_keys,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._keys = keys  # cluster_lock_keys on a Redis Cluster
        self._closed = False

    async def _run(self, what: str, script: str, keys: list[str], args: list[Any]) -> Any:
        # EVALSHA directly (coredis' Script wrapper adds work to every round trip: see
        # docs/locks.md), loading the script once when the server does not know it
        # (first use, SCRIPT FLUSH).
        if self._closed:
            raise LockUnavailable(f"Redis {what}: the connection is closed")
        client = self._client
        try:
            try:
                return await client.evalsha(_SHA[script], keys=keys, args=args)
            except NoScriptError:
                await client.script_load(script)
                return await client.evalsha(_SHA[script], keys=keys, args=args)
        except DRIVER_ERRORS as exc:
            raise lock_error(exc, what) from exc

    async def acquire(self, name: str, owner: str, ttl: float) -> AcquireResult:
        keys = list(self._keys(self._prefix, check_key_text(name)))
        reply = await self._run("lock acquire", ACQUIRE, keys, [owner, ttl_ms(ttl)])
        try:
            acquired, number = int(reply[0]), int(reply[1])
        except (TypeError, ValueError, IndexError):
            raise LockError(f"unexpected reply to the acquire script: {reply!r}") from None
        if acquired:
            return AcquireResult(number)
        return AcquireResult(None, max(number, 0) / 1000)

    async def renew(self, name: str, owner: str, ttl: float) -> bool:
        key, _ = self._keys(self._prefix, check_key_text(name))
        return bool(await self._run("lock renew", RENEW, [key], [owner, ttl_ms(ttl)]))

    async def release(self, name: str, owner: str) -> bool:
        key, _ = self._keys(self._prefix, check_key_text(name))
        return bool(await self._run("lock release", RELEASE, [key], [owner]))

    async def ping(self) -> None:
        if self._closed:
            raise LockUnavailable("Redis PING: the connection is closed")
        try:
            await self._client.ping()
        except DRIVER_ERRORS as exc:
            raise lock_error(exc, "PING") from exc

    async def aclose(self) -> None:
        self._closed = True
        self._client.connection_pool.disconnect()
