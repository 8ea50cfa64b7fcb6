"""Actors: a child with a bounded mailbox, ``call`` / ``cast``, and a ref that survives
restarts.

The mailbox belongs to the :func:`actor_spec`, not to one incarnation: messages queued
when an actor crashes stay queued and the next incarnation handles them. Only the
message being handled at the moment of the crash is lost; if it was a ``call``, its
caller gets :class:`ActorCrashed` at once (the crash is ``__cause__``).
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import outcome
import trio

from ._child import ChildState, _current_child, cleanup_scope
from ._events import Event, SupervisorStopped
from ._exceptions import (
    ActorCrashed,
    ActorStopped,
    CallTimeout,
    CallToSelf,
    ChildNotFound,
    MailboxFull,
)
from ._registry import current_registry
from ._spec import ChildSpec

if TYPE_CHECKING:
    from ._child import Child

__all__ = ["Actor", "ActorRef", "Mailbox", "actor_spec", "whereis"]

_log = logging.getLogger("supervisors")

DEFAULT_CALL_TIMEOUT = 5.0

A = TypeVar("A", bound="Actor")

_CALL = 0
_CAST = 1

# States after which no incarnation will take messages until the child is started again.
_DOWN = (ChildState.TERMINATED, ChildState.STOPPED, ChildState.FAILED)

# (mailbox, task) of the actor incarnation the current task runs in (or was started by).
_current_actor: contextvars.ContextVar[tuple[Mailbox, trio.lowlevel.Task] | None] = (
    contextvars.ContextVar("supervisors_current_actor", default=None)
)


class _Reply:
    """A one-shot reply slot: the caller parks on it, the actor reschedules it."""

    __slots__ = ("abandoned", "result", "scope", "task")

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.result: outcome.Outcome[Any] | None = None
        self.abandoned = False
        self.scope: trio.CancelScope | None = None  # a wait for mailbox space

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


_Item = tuple[int, Any, _Reply | None]


class Mailbox:
    """A bounded queue of messages for one actor; it outlives the actor's incarnations.

    ``depth`` is the backlog: queued messages plus senders waiting on a full mailbox;
    ``peak`` the largest depth seen; ``size`` the bound. Fault plans can hook
    :attr:`filter` to delay or drop messages.
    """

    __slots__ = (
        "_busy",
        "_calls",
        "_down",
        "_held",
        "_receive",
        "_send",
        "_unpark",
        "depth",
        "filter",
        "peak",
        "size",
    )

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"mailbox_size must be an int >= 1, got {size!r}")
        self.size = size
        self._send, self._receive = trio.open_memory_channel[_Item](size)
        self.depth = 0
        self.peak = 0
        self.filter: Callable[[int, Any], Awaitable[Any]] | None = None
        # Messages an incarnation took but died before handling: first in line for the
        # next one, in their order (never dropped, whatever the mailbox holds). The flag
        # says it went through the filter already: a fault applies to it once.
        self._held: deque[tuple[_Item, bool]] = deque()
        self._calls: set[_Reply] = set()  # calls not answered yet, to fail when down
        self._down: str | None = None  # why no incarnation will take messages
        self._busy: _Reply | None = None  # the call being handled
        self._unpark: Callable[[], None] | None = None  # see _watch_child

    def _put_nowait(self, item: _Item) -> None:
        self._send.send_nowait(item)
        depth = self.depth = self.depth + 1
        if depth > self.peak:
            self.peak = depth

    async def _put(self, item: _Item) -> None:
        # trio's rule: an operation that raises Cancelled had no effect.
        await trio.lowlevel.checkpoint_if_cancelled()
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
            await trio.lowlevel.cancel_shielded_checkpoint()

    def _hold(self, item: _Item, filtered: bool) -> None:
        """Put back, first in line, a message taken but not handled."""
        self._held.appendleft((item, filtered))
        depth = self.depth = self.depth + 1
        if depth > self.peak:
            self.peak = depth

    def _watch_child(self, child: Child) -> None:
        """Called on each state change of the actor's child (see ``Child.state``)."""
        if self._unpark is not None:
            self._unpark()
            self._unpark = None
        state = child.state
        if state not in _DOWN:
            self._down = None
            return
        sup = root = child.sup
        while root.parent is not None:
            root = root.parent.supervisor
        if not sup._accepting and root._accepting:
            # A nested supervisor stopping all its children in a tree that goes on: it
            # may well be restarted (and this actor with it), so callers wait for that,
            # up to their timeout. If the whole tree stops first, this child will not
            # change state again: the root's last event is the moment it is down.
            def on_event(event: Event) -> None:
                if isinstance(event, SupervisorStopped) and event.supervisor == root.path:
                    self._watch_child(child)

            self._unpark = root.subscribe(on_event)
            return
        self._down = f"actor {child.path!r} is {state.value}"
        if not self._calls:
            return
        for reply in list(self._calls):
            if reply is self._busy:  # an overstaying incarnation is still on it
                continue
            # One exception (and outcome) per caller: an Outcome unwraps only once, and
            # each caller's traceback is its own.
            reply.deliver(outcome.Error(ActorStopped(f"{self._down}: the call was not handled")))
            if reply.scope is not None:  # waiting for space that nobody will make
                reply.scope.cancel()


def _inside(ancestor: trio.lowlevel.Task) -> bool:
    """Whether the current task is ``ancestor`` or runs in a nursery it opened."""
    task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
    while task is not None:
        if task is ancestor:
            return True
        nursery = task.parent_nursery
        task = nursery.parent_task if nursery is not None else None
    return False


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
        counts), :class:`ActorCrashed` at once if the actor crashes while handling it,
        :class:`ActorStopped` at once if the actor stops for good before taking it, and
        :class:`CallToSelf` at once when the actor calls itself. A request the actor had
        not taken when its caller left (timeout, cancellation) is skipped: no effect.
        """
        mailbox = self._mailbox
        if mailbox._down is not None:
            await trio.lowlevel.checkpoint()
            raise ActorStopped(f"{mailbox._down}: the call was not handled")
        owner = _current_actor.get()
        if owner is not None and owner[0] is mailbox and _inside(owner[1]):
            raise CallToSelf(
                f"actor {self.path!r} called itself: it cannot answer while it waits "
                "(handle the request directly, or cast to yourself)"
            )
        reply = _Reply()
        item = (_CALL, request, reply)
        calls = mailbox._calls
        calls.add(reply)
        try:
            with trio.move_on_after(timeout):
                try:
                    mailbox._put_nowait(item)  # no extra yield: reply.wait() checkpoints
                except trio.WouldBlock:
                    with trio.CancelScope() as reply.scope:
                        await mailbox._put(item)
                return await reply.wait()
        finally:
            calls.discard(reply)
        reply.abandoned = True
        raise CallTimeout(f"no reply from actor {self.path!r} within {timeout:g}s")

    async def cast(self, message: Any) -> None:
        """Queue ``message`` for ``handle_cast``; waits while the mailbox is full.

        Cancelled, it has had no effect (the message is not queued).
        """
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
    ``None`` on a normal stop. As in OTP, ``terminate`` does not run when ``init``
    failed, and an error in ``terminate`` is logged, never put in place of the real one.
    ``self.ref`` is the actor's own :class:`ActorRef`.

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
        mailbox = self.mailbox
        ref = ActorRef(path, mailbox)
        actor = self.cls()
        actor.ref = ref
        _current_actor.set((mailbox, trio.lowlevel.current_task()))
        scope = handle.scope if handle is not None else None
        held = mailbox._held
        receive = mailbox._receive.receive
        current: _Reply | None = None
        track = handle is not None and handle.child.spec.stall_timeout is not None
        await actor.init(*self.args)  # if it fails, terminate() does not run (OTP)
        try:
            task_status.started(ref)
            while True:
                if held:
                    await trio.lowlevel.checkpoint()
                    item, filtered = held.popleft()
                elif track and handle is not None:
                    with handle.idle():  # an empty mailbox is no stall
                        item = await receive()
                    filtered = False
                else:
                    item = await receive()
                    filtered = False
                mailbox.depth -= 1
                kind, payload, reply = item
                if scope.cancel_called if scope is not None else _cancel_pending():
                    # Killed or stopped after the message was handed over but before this
                    # incarnation ran again: it was not handled, so it is not lost.
                    mailbox._hold(item, filtered)
                    await trio.lowlevel.checkpoint()  # raises Cancelled
                    continue
                if reply is not None and (reply.abandoned or reply.result is not None):
                    continue  # its caller left (timeout, cancellation) or was failed
                if mailbox.filter is not None and not filtered:
                    try:
                        payload = await mailbox.filter(kind, payload)
                    except BaseException:  # killed while a fault held it: not handled yet
                        mailbox._hold(item, True)
                        raise
                    if payload is _DROP or (
                        reply is not None and (reply.abandoned or reply.result is not None)
                    ):
                        continue
                if reply is not None:
                    current = mailbox._busy = reply
                    result = await actor.handle_call(payload)
                    current = mailbox._busy = None
                    reply.deliver(outcome.Value(result))
                else:
                    await actor.handle_cast(payload)
                if track and handle is not None:
                    handle.last_progress = trio.current_time()
        except BaseException as exc:
            mailbox._busy = None
            injected = handle._injected if handle is not None else None
            if current is not None:
                current.deliver(outcome.Error(_crashed(path, exc, injected)))
            if injected is not None:
                reason: BaseException | None = injected
            elif handle is not None and handle.stopping:
                reason = None
            else:
                reason = exc
            try:
                with cleanup_scope():
                    await actor.terminate(reason)
            except Exception:
                _log.exception("actor %r: terminate() failed (the real exit reason stands)", path)
            raise


def _cancel_pending() -> bool:
    return trio.current_effective_deadline() == -math.inf


def _crashed(path: str, exc: BaseException, injected: BaseException | None) -> ActorCrashed:
    """The error for the caller whose call was being handled when the actor died."""
    cause = injected if injected is not None else exc
    if isinstance(cause, trio.Cancelled):
        return ActorCrashed(f"actor {path!r} was stopped while handling this call")
    text = str(cause)
    crashed = ActorCrashed(
        f"actor {path!r} crashed while handling this call: {type(cause).__name__}"
        + (f": {text}" if text else "")
    )
    crashed.__cause__ = cause
    return crashed


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
