"""``Locks`` and ``Lease``: distributed locks whose holders stop before the lock can expire.

How one ``async with locks.hold(name)`` goes:

1. **acquire**: one round trip (a Lua script on Redis: ``SET NX PX`` + ``INCR`` of the
   fence counter) until acquired or ``wait`` runs out (jittered retries, never sleeping
   past the holder's remaining TTL); ``hold()`` answers within ``max(wait, op_timeout)``
   (an unanswered attempt is undone by the actor in the background). ``acquired_at``
   is when the winning request was *sent*: the lock surely lives until
   ``acquired_at + ttl`` (the round trip is subtracted).
2. **body**: runs in a cancel scope whose deadline is
   ``renewed_at + ttl - safety_margin``; a renewer task in the holder's own nursery
   renews every ``ttl / 3`` (compare-and-pexpire) and moves the deadline forward after
   each success (``renewed_at`` = send time of that renewal). Transient failures are
   retried until the deadline; then, or at once when the lock is no longer ours, the
   body is cancelled, ``lease.lost`` is set, a ``lock lost`` warning is logged and
   ``gochat_lock_lost_total`` counts it.
3. **release**: compare-and-delete, shielded and bounded by the op timeout, whatever
   the body did (so a cancelled holder frees the lock at once while Redis answers);
   another holder's lock is never deleted.
4. :class:`~gochat_actors.LockLost` is raised out of the ``async with`` when the lease
   was lost (unless the body raised an exception of its own, which wins).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, NoReturn, Self

import trio
from prometheus_client import Counter, Histogram

from supervisors import ChildSpec, cleanup_scope

from .._checks import check_key_text, check_seconds, ttl_ms
from .._dsn import Dsn
from .._exceptions import LockError, LockLost, LockNotAcquired, LockUnavailable
from .._kvstore import MemoryStore
from .._labels import MAX_METRIC_PREFIXES, PrefixLabels
from .._owner import BackendOwner, connect_budget
from .._tracing import lock_span
from ..cache import CacheSettings
from ..log import get_logger
from ..metrics import Metrics
from ._backends import BACKENDS
from ._protocol import LockBackend, LockConnector
from ._settings import LockSettings

__all__ = ["Lease", "Locks"]

_log = get_logger("gochat_actors.lock")

_FIRST_RETRY = 0.01  # seconds before the second acquire attempt (doubles, jittered)
_MAX_RETRY = 0.2  # longest pause between acquire attempts


class Lease:
    """One held lock, as the body of :meth:`Locks.hold` sees it.

    ``token`` is the fencing token (strictly increasing per lock name: pass it with
    every write the lock protects and let the store refuse older tokens). ``lost`` is
    set when the lock is (or may be) lost; the body is cancelled at that moment.
    ``deadline`` is when the body will be cancelled if no renewal succeeds before
    (``renewed_at + ttl - margin``, on the trio clock). :attr:`held` and :meth:`check`
    compare the clock with it: a holder blocked past it (a long synchronous call, no
    checkpoint for the renewer to run) no longer holds the lock, lost set or not yet.

    Example::

        async with locks.hold("room:42") as lease:
            await db.execute(
                "UPDATE rooms SET topic=%s, fence=%s WHERE id=42 AND fence < %s",
                (topic, lease.token, lease.token),
            )
    """

    __slots__ = (
        "_body",
        "_done",
        "_gone",
        "_last_error",
        "_on_lost",
        "_owner",
        "_renewing",
        "acquired_at",
        "lost",
        "lost_reason",
        "margin",
        "name",
        "renewals",
        "renewed_at",
        "token",
        "ttl",
    )

    def __init__(
        self, name: str, token: int, *, ttl: float, margin: float, acquired_at: float, owner: str
    ) -> None:
        self.name = name
        self.token = token
        self.ttl = ttl
        self.margin = margin
        self.acquired_at = acquired_at
        self.renewed_at = acquired_at
        self.renewals = 0
        self.lost = trio.Event()
        self.lost_reason: str | None = None
        self._owner = owner
        self._gone = False  # known not to be ours any more: nothing to release
        self._done = trio.Event()  # the body is over: the renewer returns
        self._renewing = False
        self._last_error = "none"
        self._body = trio.CancelScope(deadline=self.deadline)
        # Set by Locks: marks the lease lost (log, metric, cancel); None: mark it here.
        self._on_lost: Callable[[Lease, str], None] | None = None

    @property
    def deadline(self) -> float:
        """When the body is cancelled unless a renewal succeeds first (trio clock)."""
        return self.renewed_at + self.ttl - self.margin

    @property
    def held(self) -> bool:
        """True while the lease is not lost and its deadline has not passed (it stays
        True after a normal release)."""
        if self.lost.is_set():
            return False
        return self._done.is_set() or trio.current_time() < self.deadline

    def check(self) -> None:
        """Raise :class:`~gochat_actors.LockLost` if the lease is lost or its deadline
        has passed (then it is marked lost, as the renewer would have).

        Example::

            lease.check()          # before an irreversible step outside the fenced store
            await send_email()
        """
        if not self.lost.is_set() and not self.held:
            reason = _overdue(self)
            if self._on_lost is not None:
                self._on_lost(self, reason)
            else:  # a Lease made by hand
                self.lost_reason = reason
                self.lost.set()
                self._body.cancel()
        if self.lost.is_set():
            raise LockLost(f"lock {self.name!r} (token {self.token}) lost: {self.lost_reason}")

    def __repr__(self) -> str:
        state = f"lost: {self.lost_reason}" if self.lost.is_set() else "held"
        return f"<Lease {self.name!r} token={self.token} ttl={self.ttl:g} {state}>"


def _overdue(lease: Lease) -> str:
    return (
        f"no renewal for {lease.ttl - lease.margin:.3g}s, the safe deadline "
        f"(last error: {lease._last_error})"
    )


class Locks(BackendOwner[LockBackend]):
    """Distributed locks on Redis (or in memory), with fencing tokens and renewal.

    ``settings.url`` empty means the cache's URL (``cache_settings.url``), else
    ``memory://``. Keys are ``<cache key_prefix>lock:{<name>}`` and its fence counter
    ``...:fence``; every round trip is bounded by ``cache_settings.op_timeout``.
    ``safety_margin`` (seconds) is how long before the lock could expire its body is
    cancelled; by default ``ttl / 10``. ``store`` is the :class:`MemoryStore` used with
    ``memory://`` (share the cache's: ``store=cache.store``); ``backend`` replaces the
    URL's backend with any :data:`LockConnector`. ``metric_prefixes`` /
    ``max_metric_prefixes`` bound the ``prefix`` label of the lock metrics as the
    cache's do (:class:`~gochat_actors.cache.PrefixLabels`).

    :meth:`hold` acquires or raises within ``max(wait, op_timeout)`` of being called,
    waiting for a restarting actor included; when the actor does not come back it raises
    :class:`~gochat_actors.LockUnavailable` (never ``LockNotAcquired``, which means
    someone else holds the lock).

    Example::

        locks = Locks(settings.lock, cache_settings=settings.cache, metrics=metrics)
        async with open_supervisor([locks.spec()]):
            async with locks.hold("room:42", ttl=10.0, wait=5.0) as lease:
                await compact(room=42, fence=lease.token)
    """

    def __init__(
        self,
        settings: LockSettings,
        *,
        cache_settings: CacheSettings | None = None,
        metrics: Metrics | None = None,
        store: MemoryStore | None = None,
        backend: LockConnector | None = None,
        safety_margin: float | None = None,
        probe_interval: float = 5.0,
        metric_prefixes: Iterable[str] | None = None,
        max_metric_prefixes: int = MAX_METRIC_PREFIXES,
    ) -> None:
        if not isinstance(settings, LockSettings):
            raise TypeError(f"settings must be a LockSettings, got {type(settings).__name__}")
        if cache_settings is not None and not isinstance(cache_settings, CacheSettings):
            raise TypeError(
                f"cache_settings must be a CacheSettings, got {type(cache_settings).__name__}"
            )
        self.settings = settings
        self.metrics = metrics
        self.url = settings.url or (cache_settings.url if cache_settings else Dsn("memory://"))
        self.key_prefix = cache_settings.key_prefix if cache_settings else ""
        op_timeout = cache_settings.op_timeout if cache_settings else 1.0
        self._margin = (
            None if safety_margin is None else check_seconds("safety_margin", safety_margin)
        )
        memory = self.url.scheme == "memory"
        if store is not None and not memory:
            raise ValueError(f"store= is for memory:// locks, the url is {self.url}")
        self.store = store if store is not None else (MemoryStore() if memory else None)
        connect: LockConnector
        if backend is not None:
            connect = backend
        else:
            factory = BACKENDS.factory(self.url.scheme)
            # TLS files go with the url they were given beside
            tls = settings.tls if settings.url or cache_settings is None else cache_settings.tls
            connect = factory(self.url, self.key_prefix, op_timeout, self.store, tls=tls)
        super().__init__(
            "locks",
            connect,
            op_timeout=op_timeout,
            probe_interval=check_seconds("probe_interval", probe_interval),
            unavailable=LockUnavailable,
            connect_timeout=connect_budget(self.url, op_timeout),
        )
        self._label = PrefixLabels(metric_prefixes, limit=max_metric_prefixes)
        self._metric_children: dict[str, tuple[Counter, Histogram]] = {}
        self._background: trio.Nursery | None = None  # undoes unanswered acquires

    async def run(
        self, *, task_status: trio.TaskStatus[Self] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Connect, ping once, serve until cancelled (``task_status.started(self)`` when
        ready); also runs the releases that undo unanswered acquires.

        Example::

            await nursery.start(locks.run)   # or run locks.spec() in a supervisor
        """
        async with trio.open_nursery() as background:
            self._background = background
            try:
                await super().run(task_status=task_status)
            finally:
                self._background = None

    def __repr__(self) -> str:
        return f"<Locks {self.url} running={self.running}>"

    def spec(self, id: str = "locks", **spec_options: Any) -> ChildSpec:
        """The child that owns the backend (see :meth:`run`); options go to
        :class:`supervisors.ChildSpec`.

        Example::

            children.append(locks.spec("locks"))
        """
        return self._spec(id, spec_options)

    # -- hold ------------------------------------------------------------------------------
    @asynccontextmanager
    async def hold(
        self, name: str, ttl: float | None = None, wait: float = 0.0
    ) -> AsyncIterator[Lease]:
        """Hold the lock ``name`` for the ``async with`` block (see the module docstring).

        ``ttl`` defaults to ``settings.default_ttl``; ``wait`` is how long to wait for a
        holder to let go (0: one attempt), and ``max(wait, op_timeout)`` bounds the whole
        acquisition. Raises :class:`~gochat_actors.LockNotAcquired`
        when someone else still holds it after ``wait``,
        :class:`~gochat_actors.LockUnavailable` when the backend cannot be reached, and
        :class:`~gochat_actors.LockLost` on exit when the lease was lost (the body was
        cancelled at that moment).

        Example::

            try:
                async with locks.hold("room:42:compaction", ttl=30.0, wait=1.0) as lease:
                    await compact(42, fence=lease.token)
            except LockNotAcquired:
                pass  # another instance is compacting this room
        """
        if not isinstance(name, str) or not name:
            raise (TypeError if not isinstance(name, str) else ValueError)(
                f"lock name must be a non-empty str, got {name!r}"
            )
        if not name.isascii():
            try:
                check_key_text(name)
            except ValueError as exc:
                raise ValueError(f"lock name {name!r} is not valid UTF-8 text") from exc
        ttl = self.settings.default_ttl if ttl is None else check_seconds("ttl", ttl)
        ttl_ms(ttl)  # beyond what Redis accepts: refused before any round trip
        wait = check_seconds("wait", wait, allow_zero=True)
        margin = ttl / 10 if self._margin is None else self._margin
        if margin >= ttl * 2 / 3:
            raise ValueError(
                f"safety_margin ({margin:g}s) must be < 2/3 of ttl ({ttl:g}s): "
                "renewals start at ttl/3"
            )
        with lock_span("acquire", name):
            lease = await self._acquire(name, ttl, wait, margin)
        body_exc: BaseException | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep, lease)
            try:
                with lease._body, lock_span("hold", name):
                    yield lease
            except GeneratorExit:  # pragma: no cover - the context manager was dropped
                raise
            except BaseException as exc:  # re-raised below, outside the nursery
                body_exc = exc
            # The renewer stops while the release makes its round trip: an idle one just
            # returns (cheaper than a cancellation), one amid a round trip is cancelled.
            lease._done.set()
            if lease._renewing:
                nursery.cancel_scope.cancel()
            # The deadline passed (or _lose ran already), checkpoint or not: a body that
            # ran on past it without yielding was not protected for all its run.
            if lease._body.cancel_called or trio.current_time() >= lease.deadline:
                self._lose(lease, _overdue(lease))
            await self._release(lease)  # shielded and bounded
        if body_exc is not None:
            raise body_exc
        lease.check()

    async def _acquire(self, name: str, ttl: float, wait: float, margin: float) -> Lease:
        start = trio.current_time()
        give_up_at = start + wait
        bound = start + max(wait, self._op_timeout)  # hold() answers by then, whatever
        owner = secrets.token_hex(16)
        pause = _FIRST_RETRY
        uncertain = False  # an attempt went unanswered: the lock may be ours
        answered = False  # some attempt got an answer (or a clear error) back
        error: LockError | None = None
        try:
            while True:
                backend = self._slot.value
                if backend is None:
                    backend = await self._slot.get(max(0.0, bound - trio.current_time()))
                sent = trio.current_time()
                budget = min(self._op_timeout, bound - sent)
                holder_left = 0.0
                uncertain = True
                with trio.move_on_after(budget) as attempt:
                    try:
                        result = await backend.acquire(name, owner, ttl)
                    except LockUnavailable as exc:
                        error = exc
                        answered = True
                    else:
                        uncertain = False
                        answered = True
                        error = None
                        if result.token is not None:
                            return self._acquired(
                                name, result.token, ttl, margin, sent, owner, start
                            )
                        holder_left = result.retry_after
                # An attempt cut short by the bound says nothing about the server.
                if attempt.cancelled_caught and (budget >= self._op_timeout or not answered):
                    error = LockUnavailable(f"no answer to lock acquire within {budget:.3g}s")
                now = trio.current_time()
                if now >= give_up_at:
                    break
                nap = min(pause * random.uniform(0.5, 1.0), give_up_at - now)
                if holder_left > 0:
                    nap = min(nap, holder_left)
                pause = min(pause * 2, _MAX_RETRY)
                await trio.sleep(nap)
                if trio.current_time() >= bound:
                    break
        finally:
            if uncertain:  # undo it without making the caller wait
                self._release_later(name, owner)
        if error is not None:
            raise LockUnavailable(f"lock {name!r}: {error}") from error
        raise LockNotAcquired(f"lock {name!r} is held by another owner (waited {wait:g}s)")

    def _acquired(
        self,
        name: str,
        token: int,
        ttl: float,
        margin: float,
        sent: float,
        owner: str,
        start: float,
    ) -> Lease:
        lease = Lease(name, token, ttl=ttl, margin=margin, acquired_at=sent, owner=owner)
        lease._on_lost = self._lose
        if self.metrics is not None:
            acquired, duration = self._children(name)
            acquired.inc()
            duration.observe(trio.current_time() - start)
        return lease

    def _children(self, name: str) -> tuple[Counter, Histogram]:
        """The labelled metrics of ``name``'s prefix, looked up once (``labels()`` is slow)."""
        prefix = self._label(name)
        children = self._metric_children.get(prefix)
        if children is None:
            assert self.metrics is not None
            children = (
                self.metrics.lock_acquired.labels(prefix=prefix),
                self.metrics.lock_acquire_duration.labels(prefix=prefix),
            )
            self._metric_children[prefix] = children
        return children

    # -- renewal ------------------------------------------------------------------------------
    async def _keep(self, lease: Lease) -> None:
        """The renewer: a task in the holder's nursery, never raising (a crash loses the lease)."""
        try:
            while not lease.lost.is_set():
                if lease._done.is_set():  # a short body is over before we ever ran
                    return
                with trio.move_on_at(lease.renewed_at + lease.ttl / 3):
                    await lease._done.wait()
                    return
                if lease._done.is_set():  # the body ended as the renewal fell due
                    return
                lease._renewing = True
                await self._renew(lease)
                lease._renewing = False
        except Exception as exc:  # a bug: the lock can no longer be trusted
            _log.exception("lock renewer crashed", lock=lease.name, token=lease.token)
            self._lose(lease, f"the renewer crashed: {type(exc).__name__}: {exc}")

    async def _renew(self, lease: Lease) -> None:
        """Renew once, retrying transient failures until the lease's deadline."""
        failures = 0
        while True:
            now = trio.current_time()
            if now >= lease.deadline:
                self._lose(lease, _overdue(lease))
                return
            with trio.move_on_at(min(lease.deadline, now + self._op_timeout)) as attempt:
                try:
                    backend = self._slot.value or await self._slot.get()
                    sent = trio.current_time()
                    owned = await backend.renew(lease.name, lease._owner, lease.ttl)
                except LockError as exc:
                    lease._last_error = f"{type(exc).__name__}: {exc}"
                else:
                    if not owned:
                        if lease._done.is_set():  # our own release got there first
                            return
                        self._lose(
                            lease, "the lock is no longer ours (expired or taken)", gone=True
                        )
                        return
                    lease.renewed_at = sent
                    lease.renewals += 1
                    lease._body.deadline = lease.deadline
                    if failures:
                        _log.info("lock renewed again", lock=lease.name, failures=failures)
                    return
            if attempt.cancelled_caught:
                wait = min(self._op_timeout, lease.deadline - now)
                lease._last_error = f"no answer within {wait:.3g}s"
            failures += 1
            if failures == 1:
                _log.warning(
                    "lock renewal failed; retrying until the safe deadline",
                    lock=lease.name,
                    token=lease.token,
                    error=lease._last_error,
                    seconds_left=round(lease.deadline - trio.current_time(), 3),
                )
            nap = min(lease.ttl / 15, 0.5) * random.uniform(0.5, 1.0)
            await trio.sleep_until(min(lease.deadline, trio.current_time() + nap))

    def _lose(self, lease: Lease, reason: str, *, gone: bool = False) -> None:
        lease._gone = lease._gone or gone
        if lease.lost.is_set():
            return
        lease.lost_reason = reason
        lease.lost.set()
        lease._body.cancel()
        _log.warning("lock lost", lock=lease.name, token=lease.token, reason=reason)
        if self.metrics is not None:
            self.metrics.lock_lost.labels(prefix=self._label(lease.name)).inc()

    # -- release ------------------------------------------------------------------------------
    async def _release(self, lease: Lease) -> None:
        if lease._gone:
            return  # nothing of ours to delete
        released = await self._release_quietly(lease.name, lease._owner)
        if released is False:
            self._lose(lease, "the lock was no longer ours at release", gone=True)

    def _release_later(self, name: str, owner: str) -> None:
        """Undo an unanswered acquire in the actor's background (bounded by the op
        timeout); without a running actor the key simply expires by its TTL."""
        background = self._background
        if background is None:
            _log.warning("lock acquire got no answer; it expires by its TTL", lock=name)
            return
        background.start_soon(self._release_quietly, name, owner)

    async def _release_quietly(self, name: str, owner: str) -> bool | None:
        """Compare-and-delete, shielded, bounded by the op timeout; None if it failed."""
        with cleanup_scope(self._op_timeout):
            try:
                backend = self._slot.value or await self._slot.get()
                return await backend.release(name, owner)
            except LockError as exc:
                _log.warning(
                    "lock release failed; it expires by its TTL", lock=name, error=str(exc)
                )
                return None
        _log.warning("lock release got no answer; it expires by its TTL", lock=name)
        return None
