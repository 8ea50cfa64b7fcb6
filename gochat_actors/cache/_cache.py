"""``Cache``: the facade users call, and the actor that owns its backend."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, overload

import trio
from prometheus_client import Counter, Histogram

from supervisors import ChildSpec

from .._checks import check_amount, check_seconds
from .._exceptions import CacheError, CacheMiss, CacheTimeout, CacheUnavailable
from .._labels import MAX_METRIC_PREFIXES, PrefixLabels
from .._owner import BackendOwner, connect_budget
from .._tracing import cache_span
from ..metrics import Metrics
from ._backends import BACKENDS
from ._codec import BYTES, STR, Codec
from ._memory import MemoryStore
from ._protocol import CacheBackend, CacheConnector
from ._settings import CacheSettings

__all__ = ["Cache"]

T = TypeVar("T")


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"cache keys are str, got {type(key).__name__}: {key!r}")
    if not key:
        raise ValueError("cache key must not be empty")
    return key


def _connector(settings: CacheSettings, store: MemoryStore | None) -> CacheConnector:
    """The backend the settings' URL names (``store``: the key space of ``memory://``)."""
    factory = BACKENDS.factory(settings.url.scheme)
    return factory(settings.url, settings.key_prefix, settings.op_timeout, store, tls=settings.tls)


class Cache(BackendOwner[CacheBackend]):
    """The cache: Redis (``redis://``) or in memory (``memory://``), with metrics.

    Build it once from settings, run :meth:`spec` in the supervision tree, call it from
    anywhere. Each call waits for the backend (during a restart) and runs within one
    timeout (``timeout=``, else ``settings.op_timeout``): it raises
    :class:`~gochat_actors.CacheUnavailable` when the actor does not come back or Redis
    is unreachable, :class:`~gochat_actors.CacheTimeout` when Redis does not answer in
    time, and :class:`~gochat_actors.CacheMiss` from :meth:`get` for an absent key.
    Values go through a :class:`Codec` (bytes by default; ``STR``, ``JSON``).

    ``store`` is the :class:`MemoryStore` used with ``memory://`` (a new one by default;
    pass one to share it with :class:`~gochat_actors.lock.Locks` or to inject faults).
    ``backend`` replaces the URL's backend with any :data:`CacheConnector`. Metrics are
    labelled by key prefix, bounded: ``metric_prefixes`` names the only prefixes that
    get their own series, else the first ``max_metric_prefixes`` distinct ones do (an
    all-digit prefix never); the rest count as ``_other`` (see :class:`PrefixLabels`).

    Example::

        cache = Cache(settings.cache, metrics=metrics)
        async with open_supervisor([cache.spec()]):
            await cache.set("user:42", {"name": "ann"}, ttl=60.0, codec=JSON)
            user = await cache.get("user:42", codec=JSON)
    """

    def __init__(
        self,
        settings: CacheSettings,
        *,
        metrics: Metrics | None = None,
        store: MemoryStore | None = None,
        backend: CacheConnector | None = None,
        probe_interval: float = 5.0,
        metric_prefixes: Iterable[str] | None = None,
        max_metric_prefixes: int = MAX_METRIC_PREFIXES,
    ) -> None:
        if not isinstance(settings, CacheSettings):
            raise TypeError(f"settings must be a CacheSettings, got {type(settings).__name__}")
        self.settings = settings
        self.metrics = metrics
        if store is not None and settings.url.scheme != "memory":
            raise ValueError(f"store= is for memory:// caches, the url is {settings.url}")
        self.store = (
            store
            if store is not None
            else (MemoryStore() if settings.url.scheme == "memory" else None)
        )
        super().__init__(
            "cache",
            backend if backend is not None else _connector(settings, self.store),
            op_timeout=settings.op_timeout,
            probe_interval=check_seconds("probe_interval", probe_interval),
            unavailable=CacheUnavailable,
            connect_timeout=connect_budget(settings.url, settings.op_timeout),
        )
        self._label = PrefixLabels(metric_prefixes, limit=max_metric_prefixes)
        self._timers: dict[tuple[str, str], Histogram] = {}
        self._lookups: dict[tuple[str, bool], Counter] = {}

    def __repr__(self) -> str:
        return f"<Cache {self.settings.url} running={self.running}>"

    def spec(self, id: str = "cache", **spec_options: Any) -> ChildSpec:
        """The child that owns the backend (see :meth:`run`); options go to
        :class:`supervisors.ChildSpec`.

        Example::

            children.append(cache.spec("cache"))
        """
        return self._spec(id, spec_options)

    # -- metrics: labelled children looked up once (labels() costs more than the update) --
    def _observe(self, op: str, key: str, seconds: float) -> None:
        label = (op, self._label(key))
        child = self._timers.get(label)
        if child is None:
            assert self.metrics is not None
            child = self.metrics.cache_operation_duration.labels(op=op, prefix=label[1])
            self._timers[label] = child
        child.observe(seconds)

    def _count_lookup(self, key: str, hit: bool) -> None:
        label = (self._label(key), hit)
        child = self._lookups.get(label)
        if child is None:
            assert self.metrics is not None
            family = self.metrics.cache_hits if hit else self.metrics.cache_misses
            child = family.labels(prefix=label[0])
            self._lookups[label] = child
        child.inc()

    # -- calls ---------------------------------------------------------------------------
    async def _call(
        self, op: str, key: str, timeout: float | None, call: Callable[[CacheBackend], Awaitable[T]]
    ) -> T:
        limit = self._op_timeout if timeout is None else check_seconds("timeout", timeout)
        deadline = trio.current_time() + limit
        backend = self._slot.value
        if backend is None:
            backend = await self._slot.get(limit)
        with cache_span(self.settings.url, op, key):  # a no-op while spans are off
            if self.metrics is None:
                with trio.move_on_at(deadline):
                    return await call(backend)
            else:
                start = time.perf_counter()
                try:
                    with trio.move_on_at(deadline):
                        return await call(backend)
                finally:
                    self._observe(op, key, time.perf_counter() - start)
            raise CacheTimeout(f"cache {op} {key!r} timed out after {limit:g}s")

    @overload
    async def get(self, key: str, *, timeout: float | None = None) -> bytes: ...
    @overload
    async def get(self, key: str, *, codec: Codec[T], timeout: float | None = None) -> T: ...
    async def get(
        self, key: str, *, codec: Codec[Any] = BYTES, timeout: float | None = None
    ) -> Any:
        """The value of ``key``, decoded by ``codec``; :class:`~gochat_actors.CacheMiss` if absent.

        Example::

            try:
                name = await cache.get("user:42:name", codec=STR)
            except CacheMiss:
                name = await load_name(42)
        """
        _check_key(key)
        raw = await self._call("get", key, timeout, lambda b: b.get(key))
        if self.metrics is not None:
            self._count_lookup(key, raw is not None)
        if raw is None:
            raise CacheMiss(key)
        return _decode(codec, key, raw)

    @overload
    async def mget(
        self, keys: Sequence[str], *, timeout: float | None = None
    ) -> list[bytes | None]: ...
    @overload
    async def mget(
        self, keys: Sequence[str], *, codec: Codec[T], timeout: float | None = None
    ) -> list[T | None]: ...
    async def mget(
        self, keys: Sequence[str], *, codec: Codec[Any] = BYTES, timeout: float | None = None
    ) -> list[Any]:
        """The values of ``keys`` in order, ``None`` for each absent one (one round trip).

        Example::

            names = await cache.mget(["user:1:name", "user:2:name"], codec=STR)
        """
        if isinstance(keys, str | bytes):
            raise TypeError("mget takes a sequence of keys, not one key")
        keys = [_check_key(k) for k in keys]
        if not keys:
            return []
        raws = await self._call("mget", keys[0], timeout, lambda b: b.mget(keys))
        if self.metrics is not None:
            for key, raw in zip(keys, raws, strict=True):
                self._count_lookup(key, raw is not None)
        return [
            None if raw is None else _decode(codec, key, raw)
            for key, raw in zip(keys, raws, strict=True)
        ]

    @overload
    async def set(
        self,
        key: str,
        value: bytes | bytearray | memoryview | str,
        ttl: float | None = None,
        *,
        nx: bool = False,
        timeout: float | None = None,
    ) -> bool: ...
    @overload
    async def set(
        self,
        key: str,
        value: T,
        ttl: float | None = None,
        *,
        codec: Codec[T],
        nx: bool = False,
        timeout: float | None = None,
    ) -> bool: ...
    async def set(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        *,
        codec: Codec[Any] | None = None,
        nx: bool = False,
        timeout: float | None = None,
    ) -> bool:
        """Store ``value`` under ``key`` for ``ttl`` seconds (None: no expiry).

        Without ``codec``, bytes are stored as they are and str as UTF-8; anything else
        needs a codec (``codec=JSON``). With ``nx=True`` the value is stored only if the
        key is absent. Returns True when stored.

        Example::

            await cache.set("user:42", b"...", ttl=60.0)
            first = await cache.set("job:7:claimed", "worker-3", ttl=30.0, nx=True)
        """
        _check_key(key)
        if ttl is not None:
            ttl = check_seconds("ttl", ttl)
        data = _encode(codec, key, value)
        return await self._call("set", key, timeout, lambda b: b.set(key, data, ttl, nx=nx))

    async def delete(self, *keys: str, timeout: float | None = None) -> int:
        """Delete ``keys``; the number that existed.

        Example::

            await cache.delete("user:42", "user:42:name")
        """
        checked = [_check_key(k) for k in keys]
        if not checked:
            return 0
        return await self._call("delete", checked[0], timeout, lambda b: b.delete(checked))

    async def incr(self, key: str, amount: int = 1, *, timeout: float | None = None) -> int:
        """Add ``amount`` to the integer at ``key`` (absent counts as 0); the new value.

        The key keeps its TTL. A value that is not an integer raises
        :class:`~gochat_actors.CacheError`.

        Example::

            views = await cache.incr("room:42:views")
        """
        _check_key(key)
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"amount must be an int, got {amount!r}")
        check_amount(amount)
        return await self._call("incr", key, timeout, lambda b: b.incr(key, amount))

    async def ttl(self, key: str, *, timeout: float | None = None) -> float:
        """Seconds before ``key`` expires (``math.inf`` if never); CacheMiss if absent.

        Example::

            left = await cache.ttl("session:abc")
        """
        _check_key(key)
        left = await self._call("ttl", key, timeout, lambda b: b.ttl(key))
        if left is None:
            raise CacheMiss(key)
        return left

    async def ping(self, *, timeout: float | None = None) -> float:
        """One round trip to the backend; its duration in seconds.

        Example::

            rtt = await cache.ping()
        """
        start = trio.current_time()
        await self._call("ping", "ping", timeout, lambda b: b.ping())
        return trio.current_time() - start


def _encode(codec: Codec[Any] | None, key: str, value: Any) -> bytes:
    if codec is None:
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            codec = STR
        elif isinstance(value, bytearray | memoryview):
            codec = BYTES
        else:
            raise TypeError(
                f"cache.set({key!r}): no codec given for a {type(value).__name__} value "
                "(bytes and str need none; pass codec=JSON or another Codec)"
            )
    try:
        return codec.encode(value)
    except (TypeError, ValueError) as exc:
        # TypeError or ValueError as such: their subclasses (UnicodeEncodeError...) do
        # not take a message alone.
        error = TypeError if isinstance(exc, TypeError) else ValueError
        raise error(f"cache.set({key!r}): the {codec.name} codec cannot encode it: {exc}") from exc


def _decode(codec: Codec[T], key: str, raw: bytes) -> T:
    try:
        return codec.decode(raw)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CacheError(
            f"value of {key!r} cannot be decoded by the {codec.name} codec: {exc}"
        ) from exc
