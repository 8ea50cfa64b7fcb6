"""The sockets of a MySQL server's connections, so that its close ends with them closed.

aiomysql's ``close()`` (SQLAlchemy's, a pool's dispose) returns once its transport is
told to close, not once its socket is: over TLS the socket closes only when the
server's ``close_notify`` has come back (up to 30 s, asyncio's shutdown timeout). A
bridge stopping meanwhile (the db's actors stop just before it) leaves that socket to
the garbage collector: ``ResourceWarning: unclosed transport``. :class:`OpenSockets`
notes each connection's transport as it connects; :meth:`OpenSockets.close` waits a
little for them to close, then aborts the rest.

Imported by the SQLAlchemy backend only (asyncio side).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from sqlalchemy import event

__all__ = ["SOCKET_CLOSE_WAIT", "OpenSockets"]

SOCKET_CLOSE_WAIT = 0.5
"""Seconds a closing server waits for its sockets' orderly close (the TLS shutdown's
reply) before it aborts the ones still open."""

_POLL = 0.01  # seconds between looks at the sockets while waiting for them to close


class OpenSockets:
    """The transports of one engine's (or several engines') driver connections, weakly.

    Example::

        sockets = OpenSockets()
        sockets.watch(engine)          # its pool's new connections are noted
        ...
        await engine.dispose()
        await sockets.close()          # on the asyncio side: none is left open
    """

    __slots__ = ("_transports",)

    def __init__(self) -> None:
        # transport -> its socket (asyncio's TransportSocket: fileno() is -1 once closed)
        self._transports: weakref.WeakKeyDictionary[asyncio.WriteTransport, Any] = (
            weakref.WeakKeyDictionary()
        )

    def watch(self, engine: Any) -> None:
        """Note the transport of every connection ``engine``'s pool opens from now on."""
        event.listen(engine.sync_engine.pool, "connect", self._connected)

    def _connected(self, dbapi_connection: Any, record: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        writer = getattr(driver, "_writer", None)  # aiomysql's StreamWriter
        transport = getattr(writer, "transport", None)
        if transport is not None:
            self._transports[transport] = transport.get_extra_info("socket")

    def open(self) -> list[asyncio.WriteTransport]:
        """The noted transports whose socket is still open."""
        return [t for t, sock in list(self._transports.items()) if _is_open(sock)]

    async def close(self, wait: float = SOCKET_CLOSE_WAIT) -> None:
        """On the asyncio side: wait up to ``wait`` seconds for the noted sockets to close
        (their transports were told to), then abort those still open; when this returns,
        all are closed. Cancelled, it still aborts them (closed a callback later)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        try:
            # A socket's close has no event of its own to wait on (asyncio's public API).
            while self.open() and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(_POLL)
        finally:
            left = self.open()
            for transport in left:
                transport.abort()  # its socket closes in a callback queued now
        if left:
            await asyncio.sleep(0)  # that callback runs (FIFO) before this resumes


def _is_open(sock: Any) -> bool:
    return sock is not None and sock.fileno() != -1
