"""The Redis cache backend: coredis, natively on trio (anyio), no asyncio bridge.

This module imports coredis; it is imported only when a ``redis://`` URL is used.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import coredis
import coredis.exceptions
import trio
from coredis.connection import TCPConnection
from coredis.retry import NoRetryPolicy

from .._dsn import Dsn
from .._exceptions import CacheUnavailable
from ._errors import DRIVER_ERRORS, translate
from ._limits import check_key_text, ttl_ms

__all__ = ["RedisCache", "open_redis_client", "ttl_ms"]


@asynccontextmanager
async def open_redis_client(
    url: Dsn | str, *, connect_timeout: float = 1.0, max_connections: int | None = None
) -> AsyncIterator[coredis.Redis[bytes]]:
    """A coredis client (bytes replies, no automatic retries) for the ``async with`` block.

    Connections open lazily; callers make the first round trip themselves.

    Example::

        async with open_redis_client("redis://127.0.0.1:6379/0") as client:
            await client.ping()
    """
    dsn = url if isinstance(url, Dsn) else Dsn(url)
    client: coredis.Redis[bytes] = coredis.Redis.from_url(
        dsn.reveal(),
        decode_responses=False,
        retry_policy=NoRetryPolicy(),  # our callers decide what is safe to retry
        connect_timeout=connect_timeout,
        max_connections=max_connections,
        verify_version=False,  # saves a lookup per command; we use no version-gated command
    )
    pool = client.connection_pool
    if pool.connection_class is TCPConnection:
        pool.connection_class = _TCPConnection
    _refuse_connections_once_closed(pool)
    real: BaseException | None = None
    try:
        async with client:  # the pool's task group: it wraps what the block raises
            yield client
    except BaseExceptionGroup as group:
        real = _single(group)
        if real is group:
            raise
    if real is not None:
        raise real  # outside the except block: no group in its context


_STREAMS = (
    "_write_buffer_in",
    "_write_buffer_out",
    "_push_message_buffer_in",
    "_push_message_buffer_out",
    "_streamed_message_buffer_in",
    "_streamed_message_buffer_out",
)


class _TCPConnection(TCPConnection):
    """coredis' TCP connection, closing its memory streams when it never connected, and
    letting a cancellation during the handshake through.

    coredis closes the streams only once connected, so every refused connection (a probe
    while Redis is down) would leave six unclosed streams behind: ``ResourceWarning``
    noise at garbage collection, an error in test suites that turn warnings into errors.

    A caller cancelled while its call opens a new connection (the connection's task runs
    in the caller's cancel scope until it is ready) must see its cancellation: coredis
    raises ``ConnectionError`` from a ``finally:`` when the handshake did not finish,
    which replaced the ``Cancelled`` and escaped the caller's cancel scope.
    """

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await super().run(task_status=task_status)
        except coredis.exceptions.RedisError:
            await trio.lowlevel.checkpoint_if_cancelled()  # the caller's cancellation wins
            raise
        finally:
            for name in _STREAMS:
                stream = getattr(self, name, None)
                if stream is not None:
                    stream.close()


def _refuse_connections_once_closed(pool: Any) -> None:
    """Make ``pool`` refuse to build a connection once it has exited.

    A call that reaches the pool after the client's block ended (the actor stopped
    while the call was on its way) made coredis build a connection, with six memory
    streams, and then fail to start it with a raw ``RuntimeError``: the connection was
    never run nor closed (``ResourceWarning: Unclosed <MemoryObjectReceiveStream>`` at
    garbage collection) and the caller got an untranslated error. Checked before the
    connection is built, it is a ``ConnectionError`` (``...Unavailable`` to callers).
    """
    construct = pool._construct_connection

    async def construct_while_open() -> Any:
        try:
            pool.task_group  # noqa: B018 (raises RuntimeError once the pool has exited)
        except RuntimeError:
            raise coredis.exceptions.ConnectionError("the Redis client is closed") from None
        return await construct()

    pool._construct_connection = construct_while_open


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception in ``group`` besides cancellations, else ``group`` itself."""
    rest = group.split(trio.Cancelled)[1]
    leaves: list[BaseException] = []
    stack: list[BaseException] = [rest] if rest is not None else []
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else group


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
