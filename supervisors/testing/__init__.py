"""Test helpers for supervision trees: kill children, chaos, replayable fault plans.

Also a pytest plugin (entry point ``supervisors``, active once the package is
installed) with the ``supervisor`` and ``chaos`` fixtures.

Example::

    from supervisors.testing import ChaosMonkey, EventTrace, kill

    async with open_supervisor(specs, on_event=EventTrace()) as sup:
        kill(sup, "db/replica-1")
"""

from ._chaos import ChaosMonkey
from ._faults import DelayMessages, DropMessages, FaultPlan, KillAt
from ._kill import find_handle, kill
from ._trace import EventTrace

__all__ = [
    "ChaosMonkey",
    "DelayMessages",
    "DropMessages",
    "EventTrace",
    "FaultPlan",
    "KillAt",
    "find_handle",
    "kill",
]
