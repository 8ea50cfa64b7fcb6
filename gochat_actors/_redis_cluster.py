"""Redis Cluster (``redis+cluster://h1:p1,h2:p2``; over TLS ``rediss+cluster://``):
the coredis cluster client, and the key-slot arithmetic that keeps a lock's two keys in
one hash slot.

Imported only by the Redis backends, so importing :mod:`gochat_actors` loads no driver.
"""

from __future__ import annotations

import binascii
import ssl
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

import anyio
import coredis
import coredis.exceptions
import trio
from coredis.cluster._node import ClusterNodeLocation
from coredis.connection import ClusterConnection, TCPLocation
from coredis.pool import ClusterConnectionPool
from coredis.retry import NoRetryPolicy

from ._dsn import Dsn

__all__ = ["CLUSTER_SCHEMES", "SLOTS", "cluster_client", "colocated_key", "key_slot"]

CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})
"""The URL schemes of a Redis Cluster (the second over TLS)."""

SLOTS = 16384
"""Hash slots of a Redis Cluster."""

DEFAULT_PORT = 6379


def key_slot(key: str | bytes) -> int:
    """The hash slot of ``key`` as Redis Cluster computes it: CRC16 (XMODEM) of its hash
    tag (the text between the first ``{`` and the next ``}``, when not empty), else of
    the whole key, modulo 16384.

    Example::

        >>> key_slot("user:{42}:name") == key_slot("{42}") == key_slot("42")
        True
    """
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return binascii.crc_hqx(raw, 0) % SLOTS


def colocated_key(key: str, suffix: str) -> str:
    """``key + suffix`` when that key is in ``key``'s hash slot (``key`` has a non-empty
    hash tag: the usual case), else ``key + suffix + ":<n>"`` with the smallest ``n`` that
    puts it there: two keys one Lua script may touch together on a cluster, whatever
    ``key`` holds (no tag, an empty ``{}`` tag, a ``{`` without ``}``).

    ``suffix`` must hold neither ``{`` nor ``}``, nor ``:`` followed only by digits.

    Example::

        >>> colocated_key("lock:{room:42}", ":fence")
        'lock:{room:42}:fence'
        >>> k = colocated_key("lock:{}", ":fence"); key_slot(k) == key_slot("lock:{}")
        True
    """
    plain = key + suffix
    if key_slot(plain) == key_slot(key):
        return plain
    return _search(key, suffix)


@lru_cache(maxsize=1024)
def _search(key: str, suffix: str) -> str:
    # Neither key nor key+suffix has a usable tag, so both hash whole: try numbered
    # variants. Each lands in the slot with probability 1/16384 (CRC16 spreads evenly):
    # about 16k CRCs in C on average, a few ms, once per key (cached).
    slot = key_slot(key)
    base = (key + suffix + ":").encode()
    for n in range(1 << 20):
        candidate = base + str(n).encode()
        if binascii.crc_hqx(candidate, 0) % SLOTS == slot:
            return candidate.decode()
    raise AssertionError(f"no key in slot {slot} found for {key!r}")  # pragma: no cover


# -- the client ---------------------------------------------------------------------

_STREAMS = (
    "_write_buffer_in",
    "_write_buffer_out",
    "_push_message_buffer_in",
    "_push_message_buffer_out",
    "_streamed_message_buffer_in",
    "_streamed_message_buffer_out",
)


async def run_connection(
    connection: Any, run: Callable[..., Awaitable[None]], task_status: Any
) -> None:
    """A coredis connection's ``run`` (``super().run`` of both our connection classes)
    with two fixes: its memory streams closed when it ends (coredis leaves them open when
    it never connected), and a caller cancelled during the handshake sees its
    cancellation (coredis raises ``ConnectionError`` from a ``finally:`` then, which
    replaced the ``Cancelled``)."""
    try:
        await run(task_status=task_status)
    except coredis.exceptions.RedisError:
        await trio.lowlevel.checkpoint_if_cancelled()  # the caller's cancellation wins
        raise
    finally:
        for name in _STREAMS:
            stream = getattr(connection, name, None)
            if stream is not None:
                stream.close()


class _ClusterConnection(ClusterConnection):
    """coredis' cluster connection with the fixes of ``_redis._TCPConnection``: its
    memory streams closed when it never connected, and a cancellation during the
    handshake let through."""

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        await run_connection(self, super().run, task_status)


class _StartupNode(ClusterNodeLocation):
    """A member from the URL: the client that asks it for the slot map uses our
    connection class too (a refused member left six unclosed streams otherwise), and
    waits for its replies no longer than the connect timeout."""

    def as_client(self, **client_args: Any) -> Any:
        # A member that accepts the connection and never answers (SIGSTOPped, a black
        # hole) would hold the slot-map lookup forever: its replies are bounded by the
        # connect timeout, so the next member is tried.
        if client_args.get("stream_timeout") is None:
            client_args["stream_timeout"] = client_args.get("connect_timeout")
        client = super().as_client(**client_args)
        client.connection_pool.connection_class = _ClusterConnection
        return client


class _ClusterPool(ClusterConnectionPool):
    """coredis' cluster pool, with our connections, closing its layout's error stream
    when it exits (coredis never closes it: ``ResourceWarning`` at garbage collection)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("connection_class", _ClusterConnection)
        super().__init__(*args, **kwargs)
        discovery = self.cluster_layout._discovery_service
        members = [_StartupNode(n.host, n.port) for n in discovery._initial_startup_nodes]
        discovery._startup_nodes = list(members)
        discovery._initial_startup_nodes = list(members)

    async def _initialize(self) -> None:
        try:
            await super()._initialize()
        except coredis.exceptions.RedisClusterError as exc:
            # No member answered with a slot map: the cluster is unreachable (a
            # ConnectionError, which the backends report as ...Unavailable).
            raise coredis.exceptions.ConnectionError(f"Redis Cluster: {exc}") from exc

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await super().__aexit__(*exc_info)
        finally:
            for stream in getattr(self.cluster_layout, "_error_stream", ()):
                stream.close()


class _FailFirstStrategy:
    """A command's routing strategy whose merge raises the first error among the
    per-node replies: coredis gathers a split command's per-node calls with
    ``return_exceptions=True`` and merges a failed node's exception as if it were its
    reply (a raw ``TypeError`` for ``MGET``/``DEL``)."""

    def __init__(self, strategy: Any) -> None:
        self._strategy = strategy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._strategy, name)

    def combine(self, node_executions: list[Any]) -> Any:
        for execution in node_executions:
            if isinstance(execution.result, BaseException):
                raise execution.result
        return self._strategy.combine(node_executions=node_executions)


class _RedisCluster(coredis.RedisCluster[Any]):
    """coredis' cluster client; a command split over several nodes raises the first
    node's error instead of merging it as a reply."""

    async def _execute_command(self, command: Any) -> Any:
        if command.routing_strategy is not None:
            command.routing_strategy = _FailFirstStrategy(command.routing_strategy)
        return await super()._execute_command(command)


def cluster_client(
    dsn: Dsn,
    *,
    connect_timeout: float = 1.0,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | None = None,
) -> coredis.RedisCluster[bytes]:
    """A coredis cluster client (bytes replies, no automatic retries) for ``dsn``'s
    members, not yet entered (``async with`` it). It learns the slot map from the first
    member that answers and follows ``MOVED``/``ASK`` redirections; commands over several
    slots (``MGET``, ``DEL``) are split per node and the replies put back in order.

    Example::

        async with cluster_client(Dsn("redis+cluster://127.0.0.1:7001,127.0.0.1:7002")) as c:
            await c.ping()
    """
    if dsn.scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"not a Redis Cluster URL: {dsn}")
    nodes = [TCPLocation(host, port or DEFAULT_PORT) for host, port in dsn.members]
    password = dsn.password.get_secret_value() if dsn.password else None
    options: dict[str, Any] = {}
    if max_connections is not None:
        options["max_connections"] = max_connections
    client: coredis.RedisCluster[bytes] = _RedisCluster(
        startup_nodes=nodes,
        username=dsn.username or None,
        password=password,
        decode_responses=False,
        retry_policy=NoRetryPolicy(),  # our callers decide what is safe to retry
        connect_timeout=connect_timeout,
        ssl_context=ssl_context,
        verify_version=False,  # we use no version-gated command
        non_atomic_cross_slot=True,  # MGET/DEL over several slots: split, merged in order
        connection_pool_cls=_ClusterPool,
        **options,
    )
    _refuse_connections_once_closed(client.connection_pool)
    return client


def _refuse_connections_once_closed(pool: Any) -> None:
    """As ``_redis._refuse_connections_once_closed``, for the cluster pool: a call that
    reaches it after the client's block ended is a ``ConnectionError``."""
    make = pool._make_node_connection

    async def make_while_open(node: Any) -> Any:
        try:
            pool.task_group  # noqa: B018 (raises RuntimeError once the pool has exited)
        except RuntimeError:
            raise coredis.exceptions.ConnectionError("the Redis client is closed") from None
        return await make(node)

    pool._make_node_connection = make_while_open
