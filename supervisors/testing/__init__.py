"""Test helpers for supervision trees: kill children, chaos, replayable fault plans.

Example::

    from supervisors.testing import kill

    async with open_supervisor(specs) as sup:
        kill(sup, "db/replica-1")
"""

from ._kill import find_handle, kill

__all__ = ["find_handle", "kill"]
