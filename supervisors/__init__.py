"""supervisors: OTP-grade supervision trees on trio.

A child is an async callable ``target(*args, task_status=trio.TASK_STATUS_IGNORED)``
that calls ``task_status.started(value)`` once it is really ready. A supervisor starts
children in readiness order, restarts them by strategy with backoff, gives up past its
restart intensity, and stops them in reverse order within per-child budgets.

Example::

    import trio
    from supervisors import ChildSpec, open_supervisor

    async def worker(name, *, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started(name)
        await trio.sleep_forever()

    async def main():
        async with open_supervisor([ChildSpec("a", worker, args=("a",))]) as sup:
            print(sup.which_children())
"""

from ._actor import Actor, ActorRef, Mailbox, actor_spec, whereis
from ._backoff import Backoff
from ._child import (
    ChildCounts,
    ChildHandle,
    ChildInfo,
    ChildState,
    cleanup_scope,
    current_child,
    progress,
    set_health,
)
from ._component import Component, Factory, component_spec
from ._events import (
    ChildExited,
    ChildOverstayed,
    ChildRestarting,
    ChildStarted,
    ChildStartFailed,
    Escalating,
    Event,
    EventStream,
    ExitReason,
    HealthChanged,
    Overstay,
    ShutdownReport,
    SupervisorStarted,
    SupervisorStopped,
)
from ._exceptions import (
    ActorCrashed,
    ActorError,
    ActorStopped,
    CallTimeout,
    CallToSelf,
    ChildNotFound,
    ChildStartError,
    Killed,
    MailboxFull,
    RestartIntensityExceeded,
    Stalled,
    SupervisorError,
    SupervisorNotRunning,
)
from ._health import Health, HealthReport
from ._run import run
from ._spec import ChildSpec, Restart, Strategy
from ._supervisor import Supervisor, open_supervisor, supervisor_spec
from ._threads import to_thread

__all__ = [
    "Actor",
    "ActorCrashed",
    "ActorError",
    "ActorRef",
    "ActorStopped",
    "Backoff",
    "CallTimeout",
    "CallToSelf",
    "ChildCounts",
    "ChildExited",
    "ChildHandle",
    "ChildInfo",
    "ChildNotFound",
    "ChildOverstayed",
    "ChildRestarting",
    "ChildSpec",
    "ChildStartError",
    "ChildStartFailed",
    "ChildStarted",
    "ChildState",
    "Component",
    "Escalating",
    "Event",
    "EventStream",
    "ExitReason",
    "Factory",
    "Health",
    "HealthChanged",
    "HealthReport",
    "Killed",
    "Mailbox",
    "MailboxFull",
    "Overstay",
    "Restart",
    "RestartIntensityExceeded",
    "ShutdownReport",
    "Stalled",
    "Strategy",
    "Supervisor",
    "SupervisorError",
    "SupervisorNotRunning",
    "SupervisorStarted",
    "SupervisorStopped",
    "actor_spec",
    "cleanup_scope",
    "component_spec",
    "current_child",
    "open_supervisor",
    "progress",
    "run",
    "set_health",
    "supervisor_spec",
    "to_thread",
    "whereis",
]
