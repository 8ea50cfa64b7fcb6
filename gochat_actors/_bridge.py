"""The trio <-> asyncio bridge: the one place asyncio is touched.

A :class:`Bridge` is a plain object; its :meth:`Bridge.run` is a supervision child that
opens a trio-asyncio loop and holds it until cancelled. Any trio task (the opener's
siblings included, not only its descendants) then runs asyncio code on that loop with
:meth:`Bridge.run_asyncio`, because the loop is passed explicitly
(``loop.create_task``), never looked up from the caller's context.

Each crossing has a cost of its own (an asyncio task, its steps, the wait; measured in
docs/benchmarks.md, db), and around a database round trip each extra crossing adds
more. Cross once per unit of work (a transaction, a poll batch), with an ``async def``
that does the whole unit on the asyncio side.

The loop runs tuned (:mod:`gochat_actors._loop_tuning`) unless ``GOCHAT_BRIDGE_TUNING=off``;
waits for asyncio tasks and :meth:`Bridge.cancel_grace` blocks are in
:mod:`gochat_actors._bridge_graces`.

trio-asyncio is imported through :mod:`gochat_actors._aiocompat`, which gives its import
the asyncio names Python 3.12-3.14 deprecated or removed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from types import CoroutineType
from typing import (
    TYPE_CHECKING,
    Any,
    NoReturn,
    TypeVar,
    TypeVarTuple,
    Unpack,
    cast,
)

import trio

from . import _aiocompat
from ._bridge_graces import Grace, Graces, TaskWait
from ._exceptions import BridgeError, BridgeNotRunning
from ._loop_tuning import ReadyQueue, tune_loop, tuning_enabled

if TYPE_CHECKING:
    from trio_asyncio import TrioEventLoop

__all__ = ["Bridge"]

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")


async def _call(async_fn: Callable[[Unpack[PosArgsT]], Awaitable[T]], args: tuple[*PosArgsT]) -> T:
    # Created inside the asyncio task, so async_fn(*args) runs in asyncio context.
    return await async_fn(*args)


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
        self._ready: ReadyQueue | None = None  # the tuned loop's queue
        self._graces: Graces | None = None  # the running loop's cancel_grace() blocks
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
                graces = Graces()
                tuning = tune_loop(loop, graces) if tune else None
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
        self, loop: TrioEventLoop | None, ready: ReadyQueue | None, graces: Graces | None
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
                wait = TaskWait(task, self._graces, loop)
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
        return Grace(graces.seconds, asyncio.current_task(loop), seconds)

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
