"""The exceptions of :mod:`supervisors`, all rooted at :class:`SupervisorError`.

::

    SupervisorError
     ├── ChildStartError            a child failed before it called task_status.started()
     ├── RestartIntensityExceeded   too many restarts in the window: the supervisor gave up
     ├── ChildNotFound (+LookupError)  no child with that id / path
     ├── SupervisorNotRunning       the supervisor is not (or no longer) running
     └── ActorError
          ├── CallTimeout (+TimeoutError)   no reply within the call's timeout
          ├── ActorCrashed              the actor crashed while handling this call
          ├── ActorStopped              the actor stopped for good before handling it
          ├── CallToSelf (+RuntimeError)  an actor called itself: that would deadlock
          └── MailboxFull               cast_nowait() on a full mailbox

    Stalled, Killed                 reasons injected into a child (not SupervisorErrors:
                                    they are what the child "died of")

Only :class:`Exception` makes a child restart; ``trio.Cancelled``, ``KeyboardInterrupt``
and ``SystemExit`` pass through untouched. The real failure is always ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "ActorCrashed",
    "ActorError",
    "ActorStopped",
    "CallTimeout",
    "CallToSelf",
    "ChildNotFound",
    "ChildStartError",
    "Killed",
    "MailboxFull",
    "RestartIntensityExceeded",
    "Stalled",
    "SupervisorError",
    "SupervisorNotRunning",
]


class SupervisorError(Exception):
    """Root of every error raised by :mod:`supervisors`.

    Example::

        try:
            async with open_supervisor(specs):
                ...
        except SupervisorError as exc:
            print("tree failed:", exc, "caused by", exc.__cause__)
    """


class ChildStartError(SupervisorError):
    """A child raised (or returned) before it was ready; ``__cause__`` is why."""

    def __init__(self, child: str, message: str) -> None:
        super().__init__(message)
        self.child = child


class RestartIntensityExceeded(SupervisorError):
    """More than ``max_restarts`` restarts happened within ``max_seconds``."""

    def __init__(self, supervisor: str, child: str, restarts: int, window: float) -> None:
        where = f"supervisor {supervisor!r}" if supervisor else "the root supervisor"
        super().__init__(
            f"{where} gave up: more than {restarts} restart(s) within {window:g}s; "
            f"last failure in child {child!r}"
        )
        self.supervisor = supervisor
        self.child = child
        self.restarts = restarts
        self.window = window


class ChildNotFound(SupervisorError, LookupError):
    """No child (or registered actor) has that id or path."""


class SupervisorNotRunning(SupervisorError):
    """The operation needs a running supervisor."""


class ActorError(SupervisorError):
    """Root of the errors of :class:`~supervisors.ActorRef` operations."""


class CallTimeout(ActorError, TimeoutError):
    """``ActorRef.call`` got no reply within its timeout."""


class ActorCrashed(ActorError):
    """The actor crashed while handling this call; ``__cause__`` is the crash."""


class ActorStopped(ActorError):
    """The actor stopped for good (terminated, stopped, or its tree shut down) before it
    took this call: the call had no effect. Calls to it fail at once until it runs again."""


class CallToSelf(ActorError, RuntimeError):
    """An actor (or a task it started) called its own ``ActorRef``: it would wait for
    itself, so the call fails at once instead of timing out."""


class MailboxFull(ActorError):
    """``cast_nowait`` found the actor's bounded mailbox full."""


class Stalled(Exception):
    """Injected into a child that reported no progress within its ``stall_timeout``."""


class Killed(Exception):
    """The default exception injected by :func:`supervisors.testing.kill`."""
