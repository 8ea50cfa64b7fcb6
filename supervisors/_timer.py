"""The start timer: one task per supervisor ends, at their deadline, the starts that a
caller waits for (the initial starts, ``start_child``, ``restart_child``).

One sleeping task and a heap cost less than a cancel scope around every start (a
tree of 100,000 children starts each of them with a deadline). Starts the supervisor's
loop launches (restarts) have their deadlines in the loop instead.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from ._child import ChildHandle

__all__ = ["StartTimer"]

_COMPACT_FROM = 16  # entries; below this the heap is never rebuilt


def _settled(handle: ChildHandle) -> bool:
    return handle._ready.is_set() or handle._finished or handle.stopping


class StartTimer:
    """Sets ``handle._ready`` at ``handle.start_deadline`` if nothing else did first:
    the caller then finds the handle neither started nor finished (a timeout), and a
    late ``started()`` is refused."""

    __slots__ = ("_at", "_compact_at", "_heap", "_scope", "_seq", "_wakeup")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, ChildHandle]] = []
        self._seq = 0
        self._at = math.inf
        self._wakeup = trio.Event()
        self._scope: trio.CancelScope | None = None
        self._compact_at = _COMPACT_FROM

    def watch(self, handle: ChildHandle, nursery: trio.Nursery) -> None:
        deadline = handle.start_deadline
        if deadline == math.inf:
            return
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, handle))
        if len(self._heap) >= self._compact_at:
            self._compact()
        if self._scope is None:
            self._scope = trio.CancelScope()
            nursery.start_soon(self._run, self._scope)
        elif deadline < self._at:
            self._wakeup.set()

    def _compact(self) -> None:
        """Drop the entries of settled starts, so the heap holds about as many entries as
        there are pending starts (amortised: it is rebuilt when it doubles)."""
        self._heap = [entry for entry in self._heap if not _settled(entry[2])]
        heapq.heapify(self._heap)
        self._compact_at = max(_COMPACT_FROM, 2 * len(self._heap))

    def cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                now = trio.current_time()
                heap = self._heap
                while heap and (heap[0][0] <= now or _settled(heap[0][2])):
                    handle = heapq.heappop(heap)[2]
                    if not _settled(handle):
                        handle._ready.set()  # timed out: its waiter sees it not started
                self._at = heap[0][0] if heap else math.inf
                with trio.move_on_at(self._at):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
