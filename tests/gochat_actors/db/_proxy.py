"""A small trio TCP proxy that can cut its connections (the server "unreachable")."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import trio

from tests._servers import HOST

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``HOST:target``; :meth:`cut` drops every connection
    and closes new ones at once, :meth:`restore` lets them through again.

    Example::

        proxy = TcpProxy(3306)
        await nursery.start(proxy.run)
        url = f"mysql+aiomysql://root@127.0.0.1:{proxy.port}/app"
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._cut = False
        self._scopes: set[trio.CancelScope] = set()
        self._replies: trio.Event | None = None  # set while replies are held
        self.connections = 0  # clients connected now
        self._changed = trio.Event()  # set when a client comes or goes
        self._keep_clients = False  # only a client closes its connection

    def keep_clients(self) -> None:
        """From now on a client's connection is closed only by the client (or :meth:`cut`):
        a server that closed or broke its side is not passed on, and what the client
        still sends is read and dropped. :attr:`connections` then counts the clients
        that have not closed their socket."""
        self._keep_clients = True

    def hold_replies(self) -> None:
        """Keep what the server sends from now on (its replies) until
        :meth:`release_replies`; what clients send still reaches the server."""
        if self._replies is None:
            self._replies = trio.Event()

    def release_replies(self) -> None:
        """Deliver the held replies, and forward again."""
        held, self._replies = self._replies, None
        if held is not None:
            held.set()

    async def _wait_replies(self) -> None:
        while self._replies is not None:
            await self._replies.wait()

    async def run(
        self, *, task_status: trio.TaskStatus[TcpProxy] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host=HOST)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self)

    async def wait_no_connections(self) -> None:
        """Return once no client is connected (each one closed its side)."""
        while self.connections:
            self._changed = trio.Event()
            await self._changed.wait()

    def cut(self) -> None:
        """Drop every connection; close new ones as soon as they are accepted."""
        self._cut = True
        for scope in list(self._scopes):
            scope.cancel()

    def restore(self) -> None:
        """Forward new connections again."""
        self._cut = False

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        try:
            await self._forward(client)
        finally:
            self.connections -= 1
            self._changed.set()

    async def _forward(self, client: trio.SocketStream) -> None:
        async with client:
            if self._cut:
                return
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    upstream = await trio.open_tcp_stream(HOST, self.target)
                    async with upstream, trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump_to_server, client, upstream, nursery)
                        nursery.start_soon(
                            _pump,
                            upstream,
                            client,
                            nursery.cancel_scope,
                            self._wait_replies,
                            self._kept,
                        )
                finally:
                    self._scopes.discard(scope)

    async def _pump_to_server(
        self, client: trio.SocketStream, upstream: trio.SocketStream, nursery: trio.Nursery
    ) -> None:
        await _pump(client, upstream, nursery.cancel_scope, keep=self._kept)
        # The server's side broke first (keep_clients()): the client's own end ends it.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async for _ in client:
                pass
        nursery.cancel_scope.cancel()

    def _kept(self) -> bool:
        return self._keep_clients


async def _pump(
    source: trio.SocketStream,
    sink: trio.SocketStream,
    done: trio.CancelScope,
    gate: Callable[[], Awaitable[None]] | None = None,
    keep: Callable[[], bool] | None = None,
) -> None:
    """Forward ``source`` to ``sink``, then end the pair (``done``); when ``keep``
    returns True at the end, return instead (the client ends the pair)."""
    try:
        async for chunk in source:
            if gate is not None:
                await gate()
            await sink.send_all(chunk)
        if gate is not None:  # the end of what the source sends is held like the rest
            await gate()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    if keep is None or not keep():
        done.cancel()
