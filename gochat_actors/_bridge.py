"""The trio <-> asyncio bridge: the one place asyncio is touched.

A :class:`Bridge` is a plain object; its :meth:`Bridge.run` is a supervision child that
opens a trio-asyncio loop and holds it until cancelled. Any trio task (the opener's
siblings included, not only its descendants) then runs asyncio code on that loop with
:meth:`Bridge.run_asyncio`, because the loop is passed explicitly
(``loop.create_task``), never looked up from the caller's context.

A crossing costs ~10-40 us with nothing inside, depending on the host's CPU; around a
database round trip each extra crossing adds more (the task's steps, the session's
bookkeeping). Cross once per unit of work (a transaction, a poll batch), with an
``async def`` that does the whole unit on the asyncio side.

trio-asyncio runs one asyncio callback per trio scheduling round, in its loop's own
task; the bridge makes the callbacks that are ready run back to back (up to
:data:`CALLBACK_BATCH`, as asyncio's own loop does), and lets other trio tasks run them
too: a crossing runs its asyncio task's first step in the caller's task, and a socket
read runs what it makes ready (the waiting task's next step, its done callbacks) in the
reader task. A crossing with I/O then takes two trio scheduling rounds where
trio-asyncio takes six (a 3-INSERT transaction: 8 rounds, not 24). The loop also waits
for callbacks without a cancel scope per wait (a waker task ends the wait when the
first timer is due; cancelled timers are dropped), and its socket reader tasks skip the
extra queued callback trio-asyncio adds after each read.

trio-asyncio is imported through :mod:`gochat_actors._aiocompat`, which gives its import
the asyncio names Python 3.12-3.14 deprecated or removed; on 3.14, where an asyncio
task's step requires its loop to be the thread's running loop, every callback the loop
runs is run with that set (the loop's own step is replaced whole: trio-asyncio's never
runs a callback).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import math
import os
from collections.abc import Awaitable, Callable, Coroutine
from types import CoroutineType
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    NamedTuple,
    NoReturn,
    TypeVar,
    TypeVarTuple,
    Unpack,
    cast,
)

import trio

from . import _aiocompat
from ._exceptions import BridgeError, BridgeNotRunning

if TYPE_CHECKING:
    from trio_asyncio import TrioEventLoop

__all__ = ["Bridge"]

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")

CALLBACK_BATCH = 64
"""Most asyncio callbacks the loop runs in one trio scheduling round (then trio tasks
get their turn: asyncio code that keeps scheduling callbacks cannot starve them)."""

TUNING_ENV = "GOCHAT_BRIDGE_TUNING"
"""Environment variable: ``off`` runs trio-asyncio's loop as it is, without
:func:`_tune_loop` (slower; for the test pass that proves the tuning is safe to lose).
Python 3.14 needs the tuning (its tasks need the running loop set around each step)."""


def tuning_enabled() -> bool:
    """False when :data:`TUNING_ENV` is ``off`` (anything else, or unset: on); a value
    other than ``on``/``off`` is a ``BridgeError`` naming it.

    Example::

        tuning_enabled()     # True unless GOCHAT_BRIDGE_TUNING=off
    """
    value = os.environ.get(TUNING_ENV, "on").strip().lower()
    if value not in ("on", "off"):
        raise BridgeError(f"{TUNING_ENV} must be 'on' or 'off', got {value!r}")
    if value == "off" and _aiocompat.TASKS_NEED_RUNNING_LOOP:
        raise BridgeError(f"{TUNING_ENV}=off: Python 3.14's asyncio needs the bridge's tuning")
    return value == "on"


_LOOP_INTERNALS = ("_main_loop_one", "_io_task", "_q_recv", "_q_send", "_timers", "_nursery")


async def _call(async_fn: Callable[[Unpack[PosArgsT]], Awaitable[T]], args: tuple[*PosArgsT]) -> T:
    # Created inside the asyncio task, so async_fn(*args) runs in asyncio context.
    return await async_fn(*args)


class _ReadyQueue:
    """The loop's queue of ready handles, in place of trio-asyncio's trio memory channel
    (same ``send_nowait``/``receive_nowait``/``receive``), which any trio task may also
    run from: :meth:`run_ready`.

    A crossing then runs its asyncio task's first step in the caller's trio task, and a
    socket read runs the callbacks it makes ready (the waiting task's next step, its
    done callbacks) in the reader task, instead of waking the loop's task for each: two
    trio scheduling rounds per crossing with I/O where there were four. Only plain
    ``call_soon`` handles are run so; a timer, a trio-task handle or the loop's stop are
    left, in order, to the loop's task.
    """

    __slots__ = (
        "_current_loop",
        "_data",
        "_exit",
        "_graces",
        "_held",
        "_library",
        "_loop",
        "_set_running",
        "_waiter",
        "starting",
    )

    def __init__(self, loop: Any, graces: _Graces) -> None:
        import sniffio

        trio_asyncio = _aiocompat.load_trio_asyncio()
        from trio_asyncio._base import TrioAsyncioExit

        self._data: collections.deque[Any] = collections.deque()
        self._held = 0  # > 0: a task is about to run the queue itself; do not wake the loop
        self._loop = loop
        self._waiter: trio.lowlevel.Task | None = None  # the loop's task, while it waits
        self.starting = False  # the loop's task waits for a trio task it started to start
        self._graces = graces
        self._current_loop, self._exit, self._library = (
            trio_asyncio.current_loop,
            TrioAsyncioExit,
            sniffio.thread_local,
        )
        # 3.14: a task's step needs its loop to be the thread's running loop.
        self._set_running = _aiocompat.TASKS_NEED_RUNNING_LOOP

    def __bool__(self) -> bool:
        return bool(self._data)

    # -- the channel interface trio-asyncio uses --------------------------------------
    def send_nowait(self, handle: Any) -> None:
        self._data.append(handle)
        if not self._held:
            self.wake()

    def receive_nowait(self) -> Any:
        try:
            return self._data.popleft()
        except IndexError:
            raise trio.WouldBlock from None

    async def receive(self) -> Any:
        """The next handle; None when woken with none (a timer is due, or another task
        ran what woke it)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._data:
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            self._waiter = trio.lowlevel.current_task()

            def abort(_: Any) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        if not self._data:  # another task ran them meanwhile
            return None
        return self._data.popleft()

    def wake(self) -> None:
        """End the loop's wait for a handle, if it waits (it looks at its timers again)."""
        task = self._waiter
        if task is not None:
            self._waiter = None
            trio.lowlevel.reschedule(task)

    def call_soon(
        self, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        """The loop's ``call_soon`` outside debug mode: a handle queued (asyncio's checks;
        trio-asyncio goes through _check_callback, _queue_handle and _check_closed)."""
        loop = self._loop
        if loop._closed:
            raise RuntimeError("Event loop is closed")
        handle = asyncio.Handle(callback, args, loop, context)
        self.send_nowait(handle)
        return handle

    # -- running from any trio task ----------------------------------------------------
    def hold(self) -> None:
        """Handles queued from now on do not wake the loop's task: the caller runs them
        with :meth:`run_ready`, then calls :meth:`release`."""
        self._held += 1

    def release(self) -> None:
        self._held -= 1
        if not self._held and self._data:
            self.wake()  # what run_ready left: the loop's task runs it

    async def cross(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` as an asyncio task on the loop, its first step here, and wait for
        its end: :func:`trio_asyncio.run_aio_future`'s contract (a trio cancellation
        cancels the task and arrives once it has ended; its CancelledError otherwise),
        without a round trip to the loop's task to start it or to hear that it ended."""
        self._held += 1
        try:
            try:
                task: asyncio.Task[T] = self._create_task(coro)
            except BaseException:
                coro.close()  # the loop closed: no "never awaited" warning
                raise
            wait = _TaskWait(task, self._graces, self._loop)
            task.add_done_callback(wait.done)
            self.run_ready()  # the task's first step
        finally:
            self.release()
        if task.done():  # it did no I/O: it ended here
            await trio.lowlevel.cancel_shielded_checkpoint()
            return task.result()
        return await wait.wait()

    def _create_task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        loop = self._loop
        if loop._task_factory is None and not loop._closed:
            return asyncio.Task(coro, loop=loop)  # what loop.create_task does, one call less
        return cast("asyncio.Task[T]", loop.create_task(coro))

    def run_ready(self) -> None:
        """Run the plain callbacks at the head of the queue here, in order (up to
        :data:`CALLBACK_BATCH`), as the loop's task would; stop at any other handle."""
        data = self._data
        if not data or type(data[0]) is not asyncio.Handle or self.starting:
            return  # (what follows a trio-task handle waits for that task to start)
        library, current_loop = self._library, self._current_loop
        token = current_loop.set(self._loop)  # get_running_loop() looks at the trio task
        previous, library.name = library.name, "asyncio"
        running = _aiocompat.thread_running_loop() if self._set_running else None
        if self._set_running:
            _aiocompat.set_thread_running_loop(self._loop)
        try:
            for _ in range(CALLBACK_BATCH):
                if not data or type(data[0]) is not asyncio.Handle:
                    return
                handle = data.popleft()
                if handle._cancelled:
                    continue
                try:
                    handle._run()
                except self._exit:  # the loop's stop: its own task must run it
                    data.appendleft(handle)
                    return
        finally:
            if self._set_running:
                _aiocompat.set_thread_running_loop(running)
            library.name = previous
            current_loop.reset(token)


class _Graces:
    """The tasks inside a :meth:`Bridge.cancel_grace` block (how long each may go on once
    its caller is cancelled) and the deferred cancels of those whose caller was."""

    __slots__ = ("deferred", "seconds")

    def __init__(self) -> None:
        self.seconds: dict[asyncio.Task[Any], float] = {}
        self.deferred: dict[asyncio.Task[Any], asyncio.TimerHandle] = {}

    def cancel(self, task: asyncio.Task[Any], loop: Any) -> None:
        """The caller was cancelled: cancel ``task`` now, or when its grace ends."""
        grace = self.seconds.get(task)
        if grace is None:
            task.cancel()  # then wait for it to end (its cleanup runs)
        else:  # inside a cancel_grace(): it gets that long to end on its own
            self.deferred[task] = loop.call_later(grace, task.cancel)

    def ended(self, task: asyncio.Task[Any]) -> None:
        if self.deferred:
            timer = self.deferred.pop(task, None)
            if timer is not None:
                timer.cancel()


class _TaskWait(Generic[T]):
    """A trio task's wait for an asyncio task's end: :func:`trio_asyncio.run_aio_future`'s
    contract (a trio cancellation cancels the task, or defers that for a
    :class:`_Graces` grace, and arrives once it has ended; its CancelledError otherwise),
    woken by the task's done callback (:meth:`done`, added by the caller)."""

    __slots__ = ("_graces", "_loop", "_task", "_waiter")

    def __init__(self, task: asyncio.Task[T], graces: _Graces, loop: Any) -> None:
        self._task, self._graces, self._loop = task, graces, loop
        self._waiter: trio.lowlevel.Task | None = None

    def done(self, _: object) -> None:
        self._graces.ended(self._task)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    async def wait(self) -> T:
        task = self._task
        raise_cancel: Callable[[], NoReturn] | None = None

        def abort(raise_cancel_: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
            nonlocal raise_cancel
            raise_cancel = raise_cancel_
            self._graces.cancel(task, self._loop)
            return trio.lowlevel.Abort.FAILED

        self._waiter = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(abort)
        if raise_cancel is not None and task.cancelled():
            try:
                task.result()
            except asyncio.CancelledError:
                raise_cancel()  # trio.Cancelled, its cause the task's CancelledError
        return task.result()


class _Grace:
    """The context manager of :meth:`Bridge.cancel_grace` (a class: it runs per commit)."""

    __slots__ = ("_graces", "_seconds", "_task")

    def __init__(
        self, graces: dict[asyncio.Task[Any], float], task: asyncio.Task[Any] | None, seconds: float
    ) -> None:
        self._graces, self._task, self._seconds = graces, task, seconds

    def __enter__(self) -> None:
        if self._task is not None:
            self._graces[self._task] = self._seconds

    def __exit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._graces.pop(self._task, None)


class _TimerWaker:
    """Ends the loop's wait for a callback when its first timer is due: one task whose
    one cancel scope is moved when the first timer changes, where trio-asyncio opens a
    timeout scope for every wait (a tenth of a crossing's CPU while any timer is pending:
    aiokafka always has one)."""

    __slots__ = ("_deadline", "_queue", "_scope", "running")

    def __init__(self, queue: _ReadyQueue) -> None:
        self._queue = queue
        self._deadline = math.inf
        self._scope: trio.CancelScope | None = None
        self.running = False

    def arm(self, deadline: float) -> None:
        """Wake the loop at ``deadline`` (trio time) unless it has woken before."""
        if deadline != self._deadline:
            self._deadline = deadline
            if self._scope is not None:
                self._scope.deadline = deadline

    async def run(self) -> None:
        self.running = True
        try:
            while True:
                with trio.CancelScope(deadline=self._deadline) as self._scope:
                    await trio.sleep_forever()
                self._scope, self._deadline = None, math.inf  # the next wait re-arms it
                self._queue.wake()
        finally:
            self.running, self._scope = False, None
            self._queue.wake()  # a wait it was to end now waits with a timeout of its own


class _Tuning(NamedTuple):
    """What :func:`_tune_loop` put in place: the waker to start, the queue to run from."""

    waker: _TimerWaker
    ready: _ReadyQueue


def _tune_loop(loop: Any, graces: _Graces) -> _Tuning | None:
    """Make ``loop`` run the asyncio callbacks ready now in one trio step, not one each,
    and drop two per-callback costs of trio-asyncio's loop.

    trio-asyncio's loop takes one callback from its queue per trio scheduling round (and
    opens a timeout scope for each); a 3-statement transaction crossing the bridge per
    statement then takes ~24 rounds instead of ~16. Here a step gives trio its turn once
    (the loop's own step when a timer is due), then runs the callbacks
    already queued, in order, up to :data:`CALLBACK_BATCH`. Timers, trio-task handles and
    the stop handle are handled as the loop does. With no timer pending, the wait for
    a callback opens no cancel scope (the loop's own step opens one per wait), and a
    cancelled timer at the head of the heap is dropped rather than waited for. Reader and
    writer tasks run their callback once per readiness, without trio-asyncio's
    ``synchronize()`` after it (a queued callback and a task wake-up per socket read);
    as in asyncio, a callback that leaves data unread is called again. A trio-asyncio
    whose internals differ (a new release) is left as it is (None is returned); the
    dependency is capped at the releases this was checked against (0.15, 0.16).

    While the returned :class:`_TimerWaker` runs (the caller starts it), the wait for a
    callback opens no cancel scope with a timer pending either: the waker ends it. The
    loop's queue becomes a :class:`_ReadyQueue`, which reader tasks (and
    :meth:`Bridge.run_asyncio`) run from themselves.
    """
    import sniffio
    from trio_asyncio._handles import AsyncHandle

    if not all(hasattr(loop, name) for name in _LOOP_INTERNALS):
        return None  # pragma: no cover - a trio-asyncio release we do not know
    queue = _ReadyQueue(loop, graces)
    set_running = _aiocompat.TASKS_NEED_RUNNING_LOOP
    old_send, old_receive = loop._q_send, loop._q_recv
    while True:  # what is queued already keeps its place
        try:
            queue.send_nowait(old_receive.receive_nowait())
        except trio.WouldBlock:
            break
    loop._q_send = loop._q_recv = queue
    old_send.send_nowait(None)  # the loop's task, if it waits on the old channel, looks again
    waker = _TimerWaker(queue)
    timers, library = loop._timers, sniffio.thread_local

    def run(handle: Any) -> None:
        if handle._cancelled:
            return
        previous, library.name = library.name, "asyncio"
        running = _aiocompat.thread_running_loop() if set_running else None
        if set_running:
            _aiocompat.set_thread_running_loop(loop)
        try:
            handle._run()
        finally:
            if set_running:
                _aiocompat.set_thread_running_loop(running)
            library.name = previous

    async def dispatch(handle: Any) -> None:
        if isinstance(handle, asyncio.TimerHandle):
            heapq.heappush(timers, handle)
        elif isinstance(handle, AsyncHandle):  # starts a trio task
            queue.starting = True  # no other task runs the queue until it has started
            try:
                handle._context.run(loop._nursery.start_soon, handle._run, name=handle._callback)
                await handle._started.wait()
            finally:
                queue.starting = False
        else:
            run(handle)

    async def step(no_wait: bool = False) -> None:
        # The loop's whole step (trio-asyncio's own is never called): every callback
        # then runs through run() or the queue's run_ready(), which set what a step
        # needs (sniffio's name; on 3.14 the thread's running loop).
        while timers and timers[0]._cancelled:
            # As asyncio's loop: a cancelled timer is dropped, not waited for (aiomysql's
            # connect leaves its 10 s timeout in the heap, cancelled).
            heapq.heappop(timers)
        if timers and timers[0]._when <= loop.time():
            run(heapq.heappop(timers))  # the due timer
        else:
            handle = None
            if queue:
                # Trio's turn first, then the head of the queue: a handle taken before
                # the yield would be overtaken by the ones behind it, which another
                # trio task may run meanwhile (asyncio promises FIFO).
                await trio.lowlevel.cancel_shielded_checkpoint()
                with contextlib.suppress(trio.WouldBlock):  # that task ran them all
                    handle = queue.receive_nowait()
            elif no_wait:
                handle = queue.receive_nowait()  # WouldBlock when empty, as the loop expects
            elif timers and not waker.running:
                # The waker is not running (the loop is closing): wait with a timeout.
                with trio.move_on_after(timers[0]._when - loop.time()):
                    handle = await queue.receive()
            else:
                # Wait for a callback with no cancel scope (the loop's own step opens
                # one per wait: a tenth of a crossing's CPU); the waker ends the wait
                # when the first timer is due.
                waker.arm(timers[0]._when if timers else math.inf)
                handle = await queue.receive()
            if handle is not None:
                await dispatch(handle)
        for _ in range(CALLBACK_BATCH):
            try:
                handle = queue.receive_nowait()
            except trio.WouldBlock:
                return
            await dispatch(handle)

    async def io_task(fd: int, handle: Any, wait_ready: Callable[[int], Awaitable[None]]) -> None:
        # The loop's own reader/writer task, without its ``synchronize()`` after each
        # callback (a queued callback and a trio wake-up per socket read). As asyncio's
        # loop does, the callback runs again while the fd stays ready, once per round.
        with handle._scope:
            try:
                while not handle._cancelled:
                    try:
                        await wait_ready(fd)
                    except OSError:
                        if handle._cancelled:  # closed under us after a remove_reader
                            break
                        raise
                    if handle._cancelled:
                        break
                    # What the read makes ready (the waiting task's next step, its done
                    # callbacks) runs here, not one trio round later in the loop's task.
                    queue.hold()
                    running = _aiocompat.thread_running_loop() if set_running else None
                    if set_running:
                        _aiocompat.set_thread_running_loop(loop)
                    try:
                        handle._run()
                        queue.run_ready()
                    finally:
                        if set_running:
                            _aiocompat.set_thread_running_loop(running)
                        queue.release()
            except Exception as exc:
                handle._raise(exc)

    loop._main_loop_one = step
    if _same_io_task(loop._io_task):
        loop._io_task = io_task
    if not loop.get_debug():
        # trio-asyncio checks every callback (inspect.iscoroutinefunction & co) on each
        # call_soon; asyncio's own loop does that only in debug mode, and so do we.
        loop._check_callback = _no_check
        loop.call_soon = queue.call_soon  # straight to the queue (trio-asyncio: 3 calls more)
    return _Tuning(waker, queue)


def _same_io_task(original: Callable[..., Any]) -> bool:
    """True when the loop's reader/writer task is the one ours replaces (trio-asyncio
    0.16: ``(fd, handle, wait_ready)`` with a ScopedHandle that has ``_scope`` and
    ``_raise``)."""
    import inspect

    from trio_asyncio._handles import ScopedHandle

    try:
        names = list(inspect.signature(original).parameters)
    except (TypeError, ValueError):  # pragma: no cover - not introspectable
        return False
    handle_has = hasattr(ScopedHandle, "_raise") and "_scope" in ScopedHandle.__slots__
    return names == ["fd", "handle", "wait_ready"] and handle_has


def _no_check(callback: object, method: str) -> None:
    """``_check_callback`` outside debug mode: as asyncio's loop, no check."""


class Bridge:
    """An asyncio event loop (trio-asyncio) living in the trio tree, usable from any task.

    Start :meth:`run` as a child (it calls ``task_status.started(self)`` once the loop
    is usable); then ``await bridge.run_asyncio(fn, *args)`` from any trio task. A trio
    cancellation of the caller cancels the asyncio task (its ``finally`` runs before the
    caller sees ``trio.Cancelled``); an exception raised by ``fn`` arrives as itself.

    Example::

        bridge = Bridge()
        async with trio.open_nursery() as nursery:
            await nursery.start(bridge.run)
            rows = await bridge.run_asyncio(fetch_rows, engine, query)  # one crossing
            nursery.cancel_scope.cancel()
    """

    def __init__(self) -> None:
        self._loop: TrioEventLoop | None = None
        self._ready: _ReadyQueue | None = None  # the tuned loop's queue
        self._graces: _Graces | None = None  # the running loop's cancel_grace() blocks
        self._opening = False
        self._state_changed = trio.lowlevel.ParkingLot()

    # -- lifecycle ---------------------------------------------------------------
    async def run(
        self, *, task_status: trio.TaskStatus[Bridge] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Open the asyncio loop, report ready, and hold it until cancelled.

        On exit (cancellation or crash) the loop closes: its remaining asyncio tasks
        are cancelled, calls in flight fail with :class:`BridgeNotRunning`. A Bridge can
        be run again after that (a supervisor restart), never twice at once.

        Example::

            await nursery.start(bridge.run)
        """
        # Imported here: patching asyncio's policy only when used.
        trio_asyncio = _aiocompat.load_trio_asyncio()

        if self._opening:
            raise BridgeError("this Bridge is already running")
        tune = tuning_enabled()
        self._opening = True  # set before the first await: two run() can't both pass
        try:
            async with trio_asyncio.open_loop() as loop, trio.open_nursery() as nursery:
                graces = _Graces()
                tuning = _tune_loop(loop, graces) if tune else None
                if tuning is not None:  # ends before the loop closes: it then waits as before
                    nursery.start_soon(tuning.waker.run)
                self._set_loop(loop, tuning.ready if tuning else None, graces)
                try:
                    task_status.started(self)
                    await trio.sleep_forever()
                finally:
                    self._set_loop(None, None, None)
        finally:
            self._opening = False
        raise AssertionError("unreachable")  # pragma: no cover

    def _set_loop(
        self, loop: TrioEventLoop | None, ready: _ReadyQueue | None, graces: _Graces | None
    ) -> None:
        self._loop, self._ready, self._graces = loop, ready, graces
        self._state_changed.unpark_all()

    @property
    def running(self) -> bool:
        """True while the loop is open and usable.

        Example::

            if not bridge.running:
                await bridge.wait_ready()
        """
        return self._loop is not None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The asyncio loop, for drivers that want it; raises :class:`BridgeNotRunning`.

        Example::

            producer = AIOKafkaProducer(loop=bridge.loop)  # if a driver insists
        """
        if self._loop is None:
            raise BridgeNotRunning("the asyncio bridge is not running")
        return cast(asyncio.AbstractEventLoop, self._loop)

    async def wait_ready(self) -> None:
        """Wait until the loop is open (returns at once if it is).

        Example::

            await bridge.wait_ready()
            await bridge.run_asyncio(connect)
        """
        while self._loop is None:
            await self._state_changed.park()

    # -- crossing ------------------------------------------------------------------
    async def run_asyncio(
        self, async_fn: Callable[[Unpack[PosArgsT]], Awaitable[T]], *args: *PosArgsT
    ) -> T:
        """Run ``await async_fn(*args)`` as an asyncio task on the loop; return its result.

        From any trio task. Cancelling the caller cancels the asyncio task and waits for
        it to finish (its cleanup runs), then raises ``trio.Cancelled``. Exceptions of
        ``async_fn`` are re-raised unchanged. Raises :class:`BridgeNotRunning` if the
        loop is not open or closes during the call. Use ``functools.partial`` for
        keyword arguments.

        Example::

            async def store(engine, rows):          # asyncio side: one whole unit of work
                async with engine.begin() as conn:
                    await conn.execute(insert(messages), rows)

            await bridge.run_asyncio(store, engine, rows)   # trio side: one crossing
        """
        loop = self._loop
        if loop is None:
            raise BridgeNotRunning("the asyncio bridge is not running")
        if self._ready is not None:
            await trio.lowlevel.checkpoint_if_cancelled()  # before the task's first step
        return await self._cross(loop, _call(async_fn, args))

    async def run_coroutine(self, coro: Coroutine[Any, Any, T]) -> T:
        """:meth:`run_asyncio` for a coroutine already made (``await coro`` as an asyncio
        task on the loop): one coroutine frame less on every step of the task, for hot
        paths whose coroutine function does nothing before its first ``await`` (an
        ``async def``: calling it runs none of its code). Same contract; ``coro`` is
        closed unawaited when the call fails before it starts. A coroutine already
        started (suspended or running elsewhere) raises RuntimeError, untouched; anything
        but a coroutine, TypeError.

        Example::

            rows = await bridge.run_coroutine(fetch_rows(engine, query))
        """
        if type(coro) is not CoroutineType:
            if not asyncio.iscoroutine(coro):  # typed so, but untyped callers pass anything
                what = "a coroutine function (call it)" if callable(coro) else repr(coro)  # type: ignore[unreachable]
                raise TypeError(f"run_coroutine() needs a coroutine, got {what}")
        elif coro.cr_suspended or coro.cr_running:  # not ours to run, nor to close
            raise RuntimeError("run_coroutine() needs a coroutine not started yet")
        loop = self._loop
        try:
            if loop is None:
                raise BridgeNotRunning("the asyncio bridge is not running")
            if self._ready is not None:
                await trio.lowlevel.checkpoint_if_cancelled()  # before the task's first step
        except BaseException:
            coro.close()  # no "never awaited" warning
            raise
        return await self._cross(loop, coro)

    async def _cross(self, loop: TrioEventLoop, coro: Coroutine[Any, Any, T]) -> T:
        ready = self._ready
        try:
            if ready is not None:
                result: T = await ready.cross(coro)
            else:  # untuned (GOCHAT_BRIDGE_TUNING=off, or a trio-asyncio we do not know)
                try:
                    task = loop.create_task(coro)
                except BaseException:
                    coro.close()  # the loop closed: no "never awaited" warning
                    raise
                assert self._graces is not None  # set with the loop
                wait = _TaskWait(task, self._graces, loop)
                task.add_done_callback(wait.done)
                result = await wait.wait()
        except asyncio.CancelledError as exc:
            # Not our cancellation (that arrives as trio.Cancelled): the loop is closing,
            # or someone cancelled the task on the asyncio side.
            if self._loop is not loop:
                raise BridgeNotRunning("the asyncio bridge stopped during the call") from exc
            raise BridgeError("the asyncio task was cancelled on the asyncio side") from exc
        return result

    def cancel_grace(self, seconds: float) -> contextlib.AbstractContextManager[None]:
        """On the asyncio side, inside a :meth:`run_asyncio` call: a trio cancellation of
        the caller that arrives while this block runs gives the asyncio task ``seconds``
        to end on its own before it is cancelled. If it ends in time, the caller gets its
        result (the cancellation is delivered at the caller's next checkpoint).

        For a step that must not be cut in the middle, such as a COMMIT on the wire
        whose reply tells whether it happened. A sync context manager: usable from code
        running under SQLAlchemy's ``run_sync``.

        Example::

            with bridge.cancel_grace(2.0):
                session.commit()       # a cancellation waits up to 2 s for the reply
        """
        graces, loop = self._graces, self._loop
        if graces is None or loop is None:
            return contextlib.nullcontext()  # not on the bridge's loop: nothing to defer
        return _Grace(graces.seconds, asyncio.current_task(loop), seconds)

    async def run_trio(
        self, async_fn: Callable[[Unpack[PosArgsT]], Awaitable[T]], *args: *PosArgsT
    ) -> T:
        """From asyncio code on this loop: run a trio function and await its result.

        This is an *asyncio*-flavoured coroutine (await it from code running under
        :meth:`run_asyncio`). It is how an asyncio loop hands work to trio with
        backpressure, e.g. a poll loop pushing batches into a bounded trio channel.

        Example::

            async def poll_loop(consumer, send_channel):      # runs on the asyncio side
                while True:
                    batch = await consumer.getmany(timeout_ms=500)
                    await bridge.run_trio(send_channel.send, batch)  # waits if full
        """
        loop = self._loop
        if loop is None:
            raise BridgeNotRunning("the asyncio bridge is not running")
        future: asyncio.Future[T] = loop.trio_as_future(async_fn, *args)
        return await future

    def __repr__(self) -> str:
        return f"<Bridge {'running' if self.running else 'stopped'}>"
