"""The pause switch every in-memory backend has: ``kill -STOP`` / ``-CONT`` in memory."""

from __future__ import annotations

import trio

__all__ = ["PauseSwitch"]


class PauseSwitch:
    """Mixin: :meth:`pause` hangs every call that awaits :meth:`_while_paused` until
    :meth:`resume`, as a stopped server would (connections open, nothing answers).

    Example::

        store.pause()     # calls hang; TTLs and leases keep running on the trio clock
        store.resume()    # hung calls go on
    """

    _resumed: trio.Event | None = None

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._resumed is not None

    def pause(self) -> None:
        """Hang every call from now on until :meth:`resume` (``kill -STOP``)."""
        if self._resumed is None:
            self._resumed = trio.Event()

    def resume(self) -> None:
        """Let hung and new calls through again (``kill -CONT``)."""
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.set()

    async def _while_paused(self) -> None:
        """Wait while paused (returns at once otherwise, without a checkpoint)."""
        while self._resumed is not None:
            await self._resumed.wait()
