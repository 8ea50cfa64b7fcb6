"""The bridge's tuning of trio-asyncio's loop (``GOCHAT_BRIDGE_TUNING=off`` leaves it out).

trio-asyncio runs one asyncio callback per trio scheduling round, in its loop's own
task; the tuning makes the callbacks that are ready run back to back (up to
:data:`CALLBACK_BATCH`, as asyncio's own loop does), and lets other trio tasks run them
too: a crossing runs its asyncio task's first step in the caller's task, and a socket
read runs what it makes ready (the waiting task's next step, its done callbacks) in the
reader task. A crossing with I/O then takes two trio scheduling rounds where
trio-asyncio takes six (a 3-INSERT transaction: 8 rounds, not 24). The loop also waits
for callbacks without a cancel scope per wait (a waker task ends the wait when the
first timer is due; cancelled timers are dropped), and its socket reader tasks skip the
extra queued callback trio-asyncio adds after each read.

On Python 3.14, where an asyncio task's step requires its loop to be the thread's
running loop, every callback the loop runs is run with that set (the loop's own step is
replaced whole: trio-asyncio's never runs a callback).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import math
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import (
    Any,
    NamedTuple,
    TypeVar,
    cast,
)

import trio

from . import _aiocompat
from ._bridge_graces import Graces, TaskWait
from ._exceptions import BridgeError

__all__ = [
    "CALLBACK_BATCH",
    "LOOP_INTERNALS",
    "TUNING_ENV",
    "ReadyQueue",
    "TimerWaker",
    "Tuning",
    "tune_loop",
    "tuning_enabled",
]

T = TypeVar("T")

CALLBACK_BATCH = 64
"""Most asyncio callbacks the loop runs in one trio scheduling round (then trio tasks
get their turn: asyncio code that keeps scheduling callbacks cannot starve them)."""

TUNING_ENV = "GOCHAT_BRIDGE_TUNING"
"""Environment variable: ``off`` runs trio-asyncio's loop as it is, without
:func:`tune_loop` (slower; for the test pass that proves the tuning is safe to lose).
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


LOOP_INTERNALS = ("_main_loop_one", "_io_task", "_q_recv", "_q_send", "_timers", "_nursery")


class ReadyQueue:
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

    def __init__(self, loop: Any, graces: Graces) -> None:
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
            wait = TaskWait(task, self._graces, self._loop)
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


class TimerWaker:
    """Ends the loop's wait for a callback when its first timer is due: one task whose
    one cancel scope is moved when the first timer changes, where trio-asyncio opens a
    timeout scope for every wait (a tenth of a crossing's CPU while any timer is pending:
    aiokafka always has one)."""

    __slots__ = ("_deadline", "_queue", "_scope", "running")

    def __init__(self, queue: ReadyQueue) -> None:
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


class Tuning(NamedTuple):
    """What :func:`tune_loop` put in place: the waker to start, the queue to run from."""

    waker: TimerWaker
    ready: ReadyQueue


def tune_loop(loop: Any, graces: Graces) -> Tuning | None:
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

    While the returned :class:`TimerWaker` runs (the caller starts it), the wait for a
    callback opens no cancel scope with a timer pending either: the waker ends it. The
    loop's queue becomes a :class:`ReadyQueue`, which reader tasks (and
    :meth:`Bridge.run_asyncio`) run from themselves.
    """
    import sniffio
    from trio_asyncio._handles import AsyncHandle

    if not all(hasattr(loop, name) for name in LOOP_INTERNALS):
        return None  # pragma: no cover - a trio-asyncio release we do not know
    queue = ReadyQueue(loop, graces)
    set_running = _aiocompat.TASKS_NEED_RUNNING_LOOP
    old_send, old_receive = loop._q_send, loop._q_recv
    while True:  # what is queued already keeps its place
        try:
            queue.send_nowait(old_receive.receive_nowait())
        except trio.WouldBlock:
            break
    loop._q_send = loop._q_recv = queue
    old_send.send_nowait(None)  # the loop's task, if it waits on the old channel, looks again
    waker = TimerWaker(queue)
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
    return Tuning(waker, queue)


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
