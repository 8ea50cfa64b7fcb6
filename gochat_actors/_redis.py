"""Redis through coredis (natively on trio, no asyncio bridge), shared by the cache and the
locks: the client owner (:func:`open_redis_client`) and the driver's exceptions
translated at the edge into ours (:func:`translate`).

Imported only by the Redis backends, so importing :mod:`gochat_actors` loads no driver.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import anyio
import coredis
import coredis.exceptions
import trio
from coredis.connection import TCPConnection
from coredis.retry import NoRetryPolicy

from ._dsn import Dsn, mask_urls
from ._exceptions import GochatError
from ._redis_cluster import CLUSTER_SCHEMES, cluster_client, run_connection
from ._tls import NO_TLS, TLSFiles, redis_ssl_context

__all__ = ["DRIVER_ERRORS", "open_redis_backend", "open_redis_client", "translate"]


@asynccontextmanager
async def open_redis_client(
    url: Dsn | str,
    *,
    connect_timeout: float = 1.0,
    max_connections: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[coredis.Redis[bytes]]:
    """A coredis client (bytes replies, no automatic retries) for the ``async with`` block.

    Connections open lazily; callers make the first round trip themselves. A
    ``redis+cluster://`` (``rediss+cluster://``) URL gives the cluster client (typed as
    the plain one: the commands our backends use are the same). ``ssl_context`` is for
    ``rediss://`` URLs (without one, coredis' default: the system's CAs).

    Example::

        async with open_redis_client("redis://127.0.0.1:6379/0") as client:
            await client.ping()
    """
    dsn = url if isinstance(url, Dsn) else Dsn(url)
    client: Any
    if dsn.scheme in CLUSTER_SCHEMES:
        client = cluster_client(
            dsn,
            connect_timeout=connect_timeout,
            ssl_context=ssl_context,
            max_connections=max_connections,
        )
    else:
        tls: dict[str, Any] = {} if ssl_context is None else {"ssl_context": ssl_context}
        client = coredis.Redis.from_url(
            dsn.reveal(),
            decode_responses=False,
            retry_policy=NoRetryPolicy(),  # our callers decide what is safe to retry
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            verify_version=False,  # saves a lookup per command; we use no version-gated command
            **tls,
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


class _Closable(Protocol):
    async def aclose(self) -> None: ...


B = TypeVar("B", bound=_Closable)


@asynccontextmanager
async def open_redis_backend(
    url: Dsn | str,
    make: Callable[[coredis.Redis[bytes]], B],
    *,
    op_timeout: float = 1.0,
    tls: TLSFiles = NO_TLS,
    error: type[GochatError] = GochatError,
    translate: Callable[[Exception, str], GochatError] | None = None,
) -> AsyncIterator[B]:
    """The backend ``make(client)`` builds over a new coredis client, for the ``async
    with`` block; closed (then the client) when it ends. ``tls``: the TLS files of
    ``rediss`` URLs (a bad file raises ``error``). A failed connect (a cluster client
    connects on entry, to learn the slot map) raises ``translate(exc, "connect")``.

    Example::

        async with open_redis_backend(url, RedisCache, error=CacheError, translate=translate) as b:
            await b.ping()
    """
    dsn = url if isinstance(url, Dsn) else Dsn(url)
    context = redis_ssl_context(dsn.scheme, tls, error=error)
    async with contextlib.AsyncExitStack() as stack:
        try:
            client = await stack.enter_async_context(
                open_redis_client(dsn, connect_timeout=op_timeout, ssl_context=context)
            )
        except DRIVER_ERRORS as exc:
            if translate is None:
                raise
            raise translate(exc, "connect") from exc
        backend = make(client)
        try:
            yield backend
        finally:
            await backend.aclose()


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
        await run_connection(self, super().run, task_status)


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


DRIVER_ERRORS: tuple[type[Exception], ...] = (
    coredis.exceptions.RedisError,
    OSError,  # TimeoutError is one too
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)
"""What a Redis call may raise that :func:`translate` maps (anything else is a bug: not caught)."""

_UNAVAILABLE = (
    coredis.exceptions.ConnectionError,  # ProtocolError, BusyLoadingError included
    coredis.exceptions.SentinelError,  # no master known, or a demoted one (redis+sentinel)
    # Redis Cluster, transient: a master lost (CLUSTERDOWN), a slot being migrated
    # (TRYAGAIN), redirections or retries exhausted (ClusterError)
    coredis.exceptions.ClusterDownError,
    coredis.exceptions.TryAgainError,
    coredis.exceptions.ClusterError,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


def translate(
    exc: Exception,
    what: str,
    *,
    unavailable: type[GochatError],
    timeout: type[GochatError],
    error: type[GochatError],
) -> GochatError:
    """Our exception for the driver's ``exc`` raised by ``what`` (raise it ``from exc``).

    Example::

        try:
            return await client.get(key)
        except DRIVER_ERRORS as exc:
            raise translate(exc, "GET", unavailable=CacheUnavailable,
                            timeout=CacheTimeout, error=CacheError) from exc
    """
    detail = mask_urls(str(exc)) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return timeout(f"Redis {what} timed out: {detail}")
    if isinstance(exc, _UNAVAILABLE):
        return unavailable(f"Redis {what} failed, server unreachable: {detail}")
    if isinstance(exc, coredis.exceptions.ResponseError) and detail.startswith("NOREPLICAS"):
        # min-replicas-to-write: the master refuses writes until a replica is back
        return unavailable(f"Redis {what} failed, no replica: {detail}")
    return error(f"Redis {what} failed: {detail}")
