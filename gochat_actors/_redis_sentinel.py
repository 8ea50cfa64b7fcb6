"""Redis Sentinel through coredis (``redis+sentinel://``), shared by the cache and the
locks: a client for the master the sentinels name (:func:`open_sentinel_client`), found
again after a failover, and the sentinels' view of that master (:class:`SentinelWatch`,
for ``/readyz``).

How a failover looks from here: connections to the dead master fail (``ConnectionError``:
``...Unavailable`` to callers); every new connection asks the sentinels where the master
is (coredis' ``SentinelConnectionPool``) and checks its ``ROLE`` is ``master``; once the
sentinels name the promoted replica, calls succeed again. Nothing here retries: callers
bound each call by their own timeout. Imported only by the Sentinel backends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import coredis
import coredis.exceptions
import trio
from coredis.connection import SentinelManagedConnection, TCPLocation
from coredis.pool import SentinelConnectionPool
from coredis.retry import NoRetryPolicy

from ._dsn import Dsn
from ._redis import (
    DRIVER_ERRORS,
    _Closable,
    _refuse_connections_once_closed,
    _single,
    _TCPConnection,
)
from ._sentinel_url import SentinelTarget, parse_sentinel_url

__all__ = [
    "MasterCheck",
    "SentinelReadiness",
    "SentinelWatch",
    "open_sentinel_backend",
    "open_sentinel_client",
]


class _SentinelConnection(SentinelManagedConnection, _TCPConnection):
    """coredis' Sentinel-managed connection (checks ``ROLE`` on connect) with our
    connection's fixes: streams closed when it never connected, the caller's
    cancellation let through during the handshake (see ``_redis._TCPConnection``)."""


class _SentinelPool(SentinelConnectionPool):
    """coredis' Sentinel pool building :class:`_SentinelConnection` connections."""

    async def _construct_connection(self) -> SentinelManagedConnection:
        location = await self.get_primary_location()
        return _SentinelConnection(
            location, self.service_name, self.is_primary, **self.connection_kwargs
        )


@dataclass(frozen=True, slots=True)
class MasterCheck:
    """What :meth:`SentinelWatch.check` found: ``problem`` (why there is no master; None
    when one is up) and ``moved`` (the master is not where the client's connections go:
    they were closed, the next ones go to the new master)."""

    problem: str | None
    moved: bool = False


class SentinelWatch:
    """The sentinels' view of one master: :meth:`check` says why there is none, and
    moves ``pool``'s connections to the master they name.

    Example::

        async with open_sentinel_client(url) as (client, watch):
            print(await watch.no_master())   # None while a master is up
    """

    def __init__(
        self,
        sentinel: coredis.Sentinel[bytes],
        master: str,
        timeout: float,
        pool: SentinelConnectionPool | None = None,
    ) -> None:
        self._sentinel = sentinel
        self.master = master
        self._timeout = timeout
        self._pool = pool
        self.down_after: float | None = None  # the sentinels' down-after-milliseconds (s)

    async def no_master(self) -> str | None:
        """Why there is no master now (None: there is one); see :meth:`check`."""
        return (await self.check()).problem

    async def check(self) -> MasterCheck:
        """Ask the sentinels, all at once, about ``master``: it is up as soon as one names
        it up (its flags hold none of ``s_down``, ``o_down``, ``failover_in_progress``);
        the problem otherwise (no sentinel answers, the master is down, a failover is
        under way, unknown name). Bounded by the timeout given at construction; a hung
        sentinel costs nothing while another answers.

        When the up master is not where the pool's connections go (a failover that
        left the old master alive: it keeps taking writes until it is demoted), the
        pool's connections are closed: the next ones ask the sentinels again.
        """
        answers = await self._ask(stop=lambda state: not _down(state))
        problems: list[str] = []
        for answer in answers:
            if isinstance(answer, coredis.exceptions.ResponseError):
                problems.append(f"Sentinel does not know a master named {self.master!r}: {answer}")
            elif isinstance(answer, dict):
                host, port = _text(answer.get("ip")), _text(answer.get("port"))
                down = _down(answer)
                if not down:
                    return MasterCheck(None, moved=self._moved(host, port))
                problems.append(
                    f"Sentinel has no master for {self.master!r}: {host}:{port} is {','.join(down)}"
                )
        if problems:
            return MasterCheck(problems[0])
        if any(answer is None for answer in answers):
            return MasterCheck(f"no sentinel of {self.master!r} answered within {self._timeout:g}s")
        return MasterCheck(f"no sentinel of {self.master!r} answers")

    async def confirm(self) -> str | None:
        """Stricter than :meth:`check`, for decisions that may lose data: None only when
        a majority of the sentinels answer and every one that answers names the same
        up master, the one the pool's connections go to; else why not.

        A failover is known at first to its leader alone (its flags say
        ``failover_in_progress``; then it names the new master): the other sentinels
        still name the old master, up, for a second or two.
        """
        answers = await self._ask()
        states = [answer for answer in answers if isinstance(answer, dict)]
        names: set[str] = set()
        for state in states:
            where = f"{_text(state.get('ip'))}:{_text(state.get('port'))}"
            down = _down(state)
            names.add(f"{where} ({','.join(down)})" if down else where)
        if len(states) <= len(answers) // 2:
            return f"{len(states)} of {len(answers)} sentinels of {self.master!r} answered"
        pool = self._pool
        here = pool.location if pool is not None else None
        if len(names) != 1 or (here is not None and names != {f"{here.host}:{here.port}"}):
            return f"the sentinels of {self.master!r} name {', '.join(sorted(names))}"
        return None

    async def _ask(
        self, stop: Callable[[dict[Any, Any]], bool] = lambda state: False
    ) -> list[dict[Any, Any] | Exception | None]:
        """Every sentinel's ``SENTINEL MASTER`` answer, asked concurrently within the
        timeout, in the sentinels' order: the state, the driver's error, or None (no
        answer in time). Stops early at the first state ``stop`` accepts. Records the
        largest ``down-after-milliseconds`` seen in :attr:`down_after`."""
        sentinels = list(self._sentinel.sentinels)
        answers: list[dict[Any, Any] | Exception | None] = [None] * len(sentinels)

        async def ask(index: int, client: Any, done: trio.CancelScope) -> None:
            try:
                state = await client.sentinel_master(self.master)
            except DRIVER_ERRORS as exc:
                answers[index] = exc
                return
            answers[index] = state
            self._learn_down_after(state)
            if stop(state):
                done.cancel()

        with trio.move_on_after(self._timeout) as scope:
            async with trio.open_nursery() as nursery:
                for index, client in enumerate(sentinels):
                    nursery.start_soon(ask, index, client, scope)
        return answers

    def _learn_down_after(self, state: dict[Any, Any]) -> None:
        raw = state.get("down-after-milliseconds", state.get(b"down-after-milliseconds"))
        if raw is None:
            return
        try:
            seconds = int(_text(raw)) / 1000
        except ValueError:
            return
        self.down_after = max(self.down_after or 0.0, seconds)

    def _moved(self, host: str, port: str) -> bool:
        pool = self._pool
        where = pool.location if pool is not None else None
        if pool is None or where is None or (where.host, str(where.port)) == (host, port):
            return False
        pool.disconnect()
        pool.location = None  # the next connection asks the sentinels, and records it
        return True


_DOWN_FLAGS = ("s_down", "o_down", "failover_in_progress")


def _down(state: dict[Any, Any]) -> list[str]:
    return [f for f in _text(state.get("flags")).split(",") if f in _DOWN_FLAGS]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _target(url: Dsn | str) -> SentinelTarget:
    dsn = url if isinstance(url, Dsn) else Dsn(url)
    return parse_sentinel_url(dsn.reveal())


@asynccontextmanager
async def open_sentinel_client(
    url: Dsn | str, *, connect_timeout: float = 1.0, max_connections: int | None = None
) -> AsyncIterator[tuple[coredis.Redis[bytes], SentinelWatch]]:
    """A coredis client of the master the sentinels of ``url`` name (bytes replies, no
    automatic retries), and the :class:`SentinelWatch` of that master, for the block.

    Connections open lazily; callers make the first round trip themselves.

    Example::

        async with open_sentinel_client("redis+sentinel://127.0.0.1:26379/gmaster/0") as (
            client, watch,
        ):
            await client.ping()
    """
    target = _target(url)
    timeouts = {"connect_timeout": connect_timeout, "stream_timeout": connect_timeout}
    sentinel_kwargs: dict[str, Any] = dict(timeouts)
    if target.sentinel_password is not None:
        sentinel_kwargs["username"] = target.sentinel_username
        sentinel_kwargs["password"] = target.sentinel_password
    sentinel: coredis.Sentinel[bytes] = coredis.Sentinel(
        [TCPLocation(host, port) for host, port in target.sentinels],
        sentinel_kwargs=sentinel_kwargs,
        decode_responses=False,
        retry_policy=NoRetryPolicy(),  # our callers decide what is safe to retry
        connect_timeout=connect_timeout,
        db=target.db,
        username=target.username,
        password=target.password,
        max_connections=max_connections,
    )
    for client in sentinel.sentinels:
        client.verify_version = False
        pool = client.connection_pool
        if pool.connection_class is coredis.connection.TCPConnection:
            pool.connection_class = _TCPConnection
        _refuse_connections_once_closed(pool)
    master: coredis.Redis[bytes] = sentinel.primary_for(
        target.master, connection_pool_class=_SentinelPool
    )
    master.verify_version = False  # saves a lookup per command; no version-gated command
    _refuse_connections_once_closed(master.connection_pool)
    pool = master.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    watch = SentinelWatch(sentinel, target.master, connect_timeout, pool)
    real: BaseException | None = None
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(sentinel)
            await stack.enter_async_context(master)
            yield master, watch
    except BaseExceptionGroup as group:
        real = _single(group)
        if real is group:
            raise
    if real is not None:
        raise real  # outside the except block: no group in its context


B = TypeVar("B", bound=_Closable)


class SentinelReadiness:
    """Mixed into a backend on the sentinels' master (its :class:`SentinelWatch` in
    ``_watch``): ``/readyz`` says not ready while the sentinels name no master."""

    _watch: SentinelWatch

    async def not_ready(self) -> str | None:
        """Why the sentinels name no master now (None: they do); moves the connections
        to the master they name if it changed (see :meth:`SentinelWatch.check`)."""
        return await self._watch.no_master()


@asynccontextmanager
async def open_sentinel_backend(
    url: Dsn | str,
    make: Callable[[coredis.Redis[bytes], SentinelWatch], B],
    *,
    op_timeout: float = 1.0,
) -> AsyncIterator[B]:
    """The backend ``make(client, watch)`` builds over a new Sentinel client, for the
    ``async with`` block; closed (then the client) when it ends.

    Example::

        async with open_sentinel_backend(url, SentinelCache, op_timeout=1.0) as backend:
            await backend.ping()
    """
    async with open_sentinel_client(url, connect_timeout=op_timeout) as (client, watch):
        backend = make(client, watch)
        try:
            yield backend
        finally:
            await backend.aclose()
