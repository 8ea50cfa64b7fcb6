"""Actors: a child with a bounded mailbox, ``call`` / ``cast``, and a ref that survives
restarts.

The mailbox belongs to the :func:`actor_spec`, not to one incarnation: messages queued
when an actor crashes stay queued and the next incarnation handles them. Only the
message being handled at the moment of the crash is lost; if it was a ``call``, its
caller gets :class:`ActorCrashed` at once (the crash is ``__cause__``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import outcome
import trio

from ._child import _current_child, cleanup_scope
from ._exceptions import ActorCrashed, CallTimeout, ChildNotFound, MailboxFull
from ._registry import current_registry
from ._spec import ChildSpec

__all__ = ["Actor", "ActorRef", "Mailbox", "actor_spec", "whereis"]

DEFAULT_CALL_TIMEOUT = 5.0

A = TypeVar("A", bound="Actor")

_CALL = 0
_CAST = 1


class _Reply:
    """A one-shot reply slot: the caller parks on it, the actor reschedules it."""

    __slots__ = ("abandoned", "result", "task")

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.result: outcome.Outcome[Any] | None = None
        self.abandoned = False

    def deliver(self, result: outcome.Outcome[Any]) -> None:
        if self.abandoned or self.result is not None:
            return
        task = self.task
        if task is not None:
            self.task = None
            self.result = result
            trio.lowlevel.reschedule(task, result)
        else:
            self.result = result

    async def wait(self) -> Any:
        result = self.result
        if result is not None:
            await trio.lowlevel.checkpoint()
            return result.unwrap()
        self.task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self.task = None
            self.abandoned = True
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)


class Mailbox:
    """A bounded queue of messages for one actor; it outlives the actor's incarnations.

    ``depth`` is the backlog: queued messages plus senders waiting on a full mailbox;
    ``peak`` the largest depth seen; ``size`` the bound. Fault plans can hook
    :attr:`filter` to delay or drop messages.
    """

    __slots__ = ("_receive", "_send", "depth", "filter", "peak", "size")

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"mailbox_size must be an int >= 1, got {size!r}")
        self.size = size
        self._send, self._receive = trio.open_memory_channel[tuple[int, Any, _Reply | None]](size)
        self.depth = 0
        self.peak = 0
        self.filter: Callable[[int, Any], Awaitable[Any]] | None = None

    def _put_nowait(self, item: tuple[int, Any, _Reply | None]) -> None:
        self._send.send_nowait(item)
        depth = self.depth = self.depth + 1
        if depth > self.peak:
            self.peak = depth

    async def _put(self, item: tuple[int, Any, _Reply | None]) -> None:
        try:
            self._put_nowait(item)
        except trio.WouldBlock:
            depth = self.depth = self.depth + 1
            if depth > self.peak:
                self.peak = depth
            try:
                await self._send.send(item)
            except BaseException:
                self.depth -= 1
                raise
        else:
            await trio.lowlevel.checkpoint()


class ActorRef:
    """A handle on an actor that names the child, not one incarnation: it survives
    restarts. While the actor restarts, messages queue in its mailbox.

    Example::

        ref = whereis("counter")
        total = await ref.call(("add", 1), timeout=1.0)
        await ref.cast("reset")
    """

    __slots__ = ("_mailbox", "path")

    def __init__(self, path: str, mailbox: Mailbox) -> None:
        self.path = path
        self._mailbox = mailbox

    def __repr__(self) -> str:
        return f"ActorRef({self.path!r})"

    @property
    def mailbox(self) -> Mailbox:
        """The actor's mailbox (depth, peak, size)."""
        return self._mailbox

    async def call(self, request: Any, *, timeout: float = DEFAULT_CALL_TIMEOUT) -> Any:
        """Send ``request`` and wait for the reply (``handle_call``'s return value).

        Raises :class:`CallTimeout` after ``timeout`` seconds (waiting for mailbox space
        counts), :class:`ActorCrashed` at once if the actor crashes while handling it.
        """
        reply = _Reply()
        mailbox = self._mailbox
        item = (_CALL, request, reply)
        with trio.move_on_after(timeout):
            try:
                mailbox._put_nowait(item)  # no extra yield: reply.wait() checkpoints
            except trio.WouldBlock:
                await mailbox._put(item)
            return await reply.wait()
        reply.abandoned = True
        raise CallTimeout(f"no reply from actor {self.path!r} within {timeout:g}s")

    async def cast(self, message: Any) -> None:
        """Queue ``message`` for ``handle_cast``; waits while the mailbox is full."""
        await self._mailbox._put((_CAST, message, None))

    def cast_nowait(self, message: Any) -> None:
        """Queue ``message`` or raise :class:`MailboxFull` at once."""
        try:
            self._mailbox._put_nowait((_CAST, message, None))
        except trio.WouldBlock:
            raise MailboxFull(
                f"mailbox of actor {self.path!r} is full ({self._mailbox.size} messages)"
            ) from None


class Actor:
    """Subclass it; the supervisor runs one instance per incarnation.

    ``init(*args)`` runs before the actor is ready; ``handle_call`` returns the reply;
    ``handle_cast`` handles a one-way message; ``terminate(reason)`` runs on the way
    out (bounded by the child's shutdown budget) with the exception that ended it, or
    ``None`` on a normal stop. ``self.ref`` is the actor's own :class:`ActorRef`.

    Example::

        class Counter(Actor):
            async def init(self, start: int) -> None:
                self.n = start

            async def handle_call(self, request):
                op, k = request
                self.n += k
                return self.n
    """

    ref: ActorRef

    async def init(self, *args: Any) -> None:
        """Set up state; called with the :func:`actor_spec` arguments."""

    async def handle_call(self, request: Any) -> Any:
        """Handle a ``call`` and return its reply."""
        raise NotImplementedError(f"{type(self).__name__} does not handle calls")

    async def handle_cast(self, message: Any) -> None:
        """Handle a ``cast``."""
        raise NotImplementedError(f"{type(self).__name__} does not handle casts")

    async def terminate(self, reason: BaseException | None) -> None:
        """Clean up; ``reason`` is what ended this incarnation (``None``: a normal stop)."""


class _ActorRunner(Generic[A]):
    __slots__ = ("args", "cls", "mailbox")

    def __init__(self, cls: type[A], args: tuple[Any, ...], mailbox: Mailbox) -> None:
        self.cls = cls
        self.args = args
        self.mailbox = mailbox

    async def __call__(
        self, *, task_status: trio.TaskStatus[ActorRef] = trio.TASK_STATUS_IGNORED
    ) -> None:
        handle = _current_child.get()
        path = handle.path if handle is not None else self.cls.__name__
        ref = ActorRef(path, self.mailbox)
        actor = self.cls()
        actor.ref = ref
        reason: BaseException | None = None
        mailbox = self.mailbox
        receive = mailbox._receive
        current: _Reply | None = None
        track = handle is not None and handle.child.spec.stall_timeout is not None
        try:
            await actor.init(*self.args)
            task_status.started(ref)
            while True:
                if track and handle is not None:
                    with handle.idle():  # an empty mailbox is no stall
                        kind, payload, reply = await receive.receive()
                else:
                    kind, payload, reply = await receive.receive()
                mailbox.depth -= 1
                if mailbox.filter is not None:
                    try:
                        payload = await mailbox.filter(kind, payload)
                    except BaseException:  # killed while a fault held it: not handled yet
                        _requeue(mailbox, path, (kind, payload, reply))
                        raise
                    if payload is _DROP:
                        continue
                if reply is not None:
                    current = reply
                    result = await actor.handle_call(payload)
                    current = None
                    reply.deliver(outcome.Value(result))
                else:
                    await actor.handle_cast(payload)
                if track and handle is not None:
                    handle.last_progress = trio.current_time()
        except BaseException as exc:
            reason = exc
            if current is not None:
                crashed = ActorCrashed(
                    f"actor {path!r} crashed while handling this call: {type(exc).__name__}"
                    + (f": {exc}" if str(exc) else "")
                )
                crashed.__cause__ = exc
                current.deliver(outcome.Error(crashed))
            raise
        finally:
            if handle is not None and handle._injected is not None:
                reason = handle._injected
            elif handle is not None and handle.stopping:
                reason = None
            with cleanup_scope():
                await actor.terminate(reason)


def _requeue(mailbox: Mailbox, path: str, item: tuple[int, Any, _Reply | None]) -> None:
    """Put back a message taken but not handled, for the next incarnation (at the end of
    the mailbox); if it is full, a call gets :class:`ActorCrashed` rather than no answer."""
    try:
        mailbox._put_nowait(item)
    except trio.WouldBlock:
        reply = item[2]
        if reply is not None:
            crashed = ActorCrashed(f"actor {path!r} stopped before handling this call")
            reply.deliver(outcome.Error(crashed))


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


_DROP: Any = _Drop()


def actor_spec(
    id: str,
    actor_class: type[Actor],
    *args: Any,
    mailbox_size: int = 100,
    **spec_options: Any,
) -> ChildSpec:
    """A :class:`ChildSpec` running ``actor_class`` with a bounded mailbox.

    ``args`` go to ``init``. ``start_child`` of this spec returns the :class:`ActorRef`;
    :func:`whereis` finds it by name. Other keyword options go to :class:`ChildSpec`.

    Example::

        async with open_supervisor([actor_spec("counter", Counter, 0, mailbox_size=100)]):
            await whereis("counter").call(("add", 1))
    """
    if not (isinstance(actor_class, type) and issubclass(actor_class, Actor)):
        raise TypeError(f"child {id!r}: actor_class must be an Actor subclass, got {actor_class!r}")
    mailbox = Mailbox(mailbox_size)
    spec_options.setdefault("kind", "actor")
    meta = dict(spec_options.pop("meta", {}))
    meta["mailbox"] = mailbox
    return ChildSpec(id, _ActorRunner(actor_class, args, mailbox), meta=meta, **spec_options)


def whereis(name: str) -> ActorRef:
    """The :class:`ActorRef` of the actor named ``name`` (an id or a path) in the current
    tree: inside it, or inside the ``async with open_supervisor(...)`` that runs it.

    Raises :class:`ChildNotFound` when no such actor exists in this tree.

    Example::

        ref = whereis("db/writer")
    """
    child = current_registry().lookup(name)
    mailbox = child.spec.meta.get("mailbox")
    if not isinstance(mailbox, Mailbox):
        raise ChildNotFound(f"child {child.path!r} is not an actor")
    return ActorRef(child.path, mailbox)
