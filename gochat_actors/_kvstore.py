"""The in-memory key space (what a Redis server is to its clients) on the trio clock, and the
connection the in-memory cache and lock backends share, with switches that make it behave
like a paused (``kill -STOP``) or unreachable Redis."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import ClassVar, Self, TypeVar

import trio

from ._checks import incr_value
from ._exceptions import ComponentUnavailable, GochatError
from ._pause import PauseSwitch

__all__ = ["MemoryConnection", "MemoryStore"]

T = TypeVar("T")


class MemoryStore(PauseSwitch):
    """What a Redis server is to its clients, in memory, on the trio clock.

    Keys expire by ``trio.current_time()`` (so ``autojump_clock`` makes a 30 s TTL pass
    at once). Every call of a backend is one simulated round trip: half of ``latency``
    on the way there, the operation (atomic: no checkpoint inside), half on the way back.
    Fault switches, for chaos tests:

    - :meth:`pause` / :meth:`resume`: requests hang until resumed, like a server under
      ``kill -STOP`` (keys keep expiring by the clock meanwhile);
    - :meth:`take_down` / :meth:`bring_up`: requests fail at once with the backend's
      ``...Unavailable`` error, like a refused connection.

    One store can back a cache and a lock backend at once (share it with ``store=``).

    Example::

        store = MemoryStore()
        cache = Cache(CacheSettings(), store=store)
        store.pause()          # every cache call now hangs (and times out)
        store.resume()
    """

    def __init__(self, *, latency: float = 0.0) -> None:
        if not isinstance(latency, int | float) or not math.isfinite(latency) or latency < 0:
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {latency!r}")
        self.latency = float(latency)
        self.round_trips = 0
        self._data: dict[str, bytes] = {}
        self._expires: dict[str, float] = {}
        self._down = False

    # -- fault switches (pause/resume come from PauseSwitch) ------------------------
    @property
    def down(self) -> bool:
        """True between :meth:`take_down` and :meth:`bring_up`."""
        return self._down

    def take_down(self) -> None:
        """Fail every request at once with the backend's ``...Unavailable`` error."""
        self._down = True

    def bring_up(self) -> None:
        """Undo :meth:`take_down`."""
        self._down = False

    # -- one round trip --------------------------------------------------------------
    async def call(self, op: Callable[[], T], error: type[GochatError]) -> T:
        """Run ``op`` on the "server" as one round trip, honouring latency and faults."""
        self.round_trips += 1
        half = self.latency / 2
        if self._down:
            raise error("the in-memory store is down (simulated)")
        if half:
            await trio.sleep(half)
        else:
            await trio.lowlevel.checkpoint()
        await self._while_paused()
        if self._down:
            raise error("the in-memory store is down (simulated)")
        result = op()
        if half:
            await trio.sleep(half)
        return result

    # -- data: called from inside ``op`` (synchronous, atomic) -----------------------
    def _live(self, key: str) -> bool:
        expires = self._expires.get(key)
        if expires is not None and expires <= trio.current_time():
            del self._expires[key]
            del self._data[key]
            return False
        return key in self._data

    def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None."""
        return self._data[key] if self._live(key) else None

    def set(self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False) -> bool:
        """Store ``value``; ``ttl`` seconds (None: no expiry); ``nx``: only if absent."""
        if nx and self._live(key):
            return False
        self._data[key] = value
        if ttl is None:
            self._expires.pop(key, None)
        else:
            self._expires[key] = trio.current_time() + ttl
        return True

    def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed."""
        existed = self._live(key)
        self._data.pop(key, None)
        self._expires.pop(key, None)
        return existed

    def expire(self, key: str, ttl: float) -> bool:
        """Make ``key`` expire ``ttl`` seconds from now; False if absent."""
        if not self._live(key):
            return False
        self._expires[key] = trio.current_time() + ttl
        return True

    def ttl(self, key: str) -> float | None:
        """Seconds left (``math.inf``: no expiry), or None when absent."""
        if not self._live(key):
            return None
        expires = self._expires.get(key)
        return math.inf if expires is None else expires - trio.current_time()

    def incr(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to the integer at ``key`` (absent = 0), keeping its TTL; what
        Redis' ``INCRBY`` refuses raises the same :class:`~gochat_actors.CacheError`
        (a value that is not exactly a 64-bit integer, a result past 64 bits)."""
        value = incr_value(key, self.get(key), amount)
        self._data[key] = str(value).encode()
        return value

    def keys(self) -> list[str]:
        """Every live key (for tests)."""
        return [key for key in list(self._data) if self._live(key)]


class MemoryConnection:
    """A connection to a :class:`MemoryStore` (a new one by default); the base of the
    in-memory backends. ``key_prefix`` is prepended to every key in the store.

    Every call is one round trip of the store; after the connection closes (the actor
    that opened it stopped) calls raise the backend's ``...Unavailable`` error.
    """

    unavailable: ClassVar[type[GochatError]] = ComponentUnavailable

    def __init__(self, store: MemoryStore | None = None, *, key_prefix: str = "") -> None:
        self.store = store if store is not None else MemoryStore()
        self._prefix = key_prefix
        self._closed = False

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Self]:
        """Open a new connection to the same store, closed at the end of the block.

        Example::

            async with MemoryCache().connect() as backend:
                await backend.ping()
        """
        conn = type(self)(self.store, key_prefix=self._prefix)
        try:
            yield conn
        finally:
            conn._closed = True

    async def _call(self, op: Callable[[], T]) -> T:
        if self._closed:
            raise self.unavailable(f"the {type(self).__name__} connection is closed")
        return await self.store.call(op, self.unavailable)

    async def ping(self) -> None:
        """One round trip."""
        await self._call(lambda: None)

    async def aclose(self) -> None:
        """Close this connection."""
        self._closed = True
