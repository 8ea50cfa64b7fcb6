"""The stall watchdog: a wedged child is restarted with ``Stalled``; an idle one is not."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

import supervisors
from supervisors import (
    Actor,
    ChildExited,
    ChildSpec,
    ExitReason,
    Stalled,
    actor_spec,
    open_supervisor,
    whereis,
)

from ._helpers import Recorder, until


async def test_a_child_without_progress_is_restarted_as_stalled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def wedged(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()  # never reports progress

    rec = Recorder()
    async with open_supervisor(
        [ChildSpec("w", wedged, stall_timeout=2.0)], backoff=None, on_event=rec
    ) as sup:
        t0 = trio.current_time()
        await until(sup, lambda: bool(rec.of(ChildExited)))
        assert trio.current_time() - t0 == 2.0
    exited = rec.of(ChildExited)[0]
    assert exited.reason is ExitReason.STALLED
    assert isinstance(exited.exception, Stalled)


async def test_progress_keeps_the_watchdog_quiet(autojump_clock: trio.testing.MockClock) -> None:
    async def busy(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(1.0)
            supervisors.progress()

    rec = Recorder()
    async with open_supervisor([ChildSpec("b", busy, stall_timeout=2.0)], on_event=rec):
        await trio.sleep(30)  # a span of time in which nothing must happen
    assert [e.reason for e in rec.of(ChildExited)] == [ExitReason.SHUTDOWN]


class Idle(Actor):
    async def handle_cast(self, message: Any) -> None:
        if message == "wedge":
            await trio.sleep_forever()


async def test_an_idle_actor_is_not_stalled_but_a_wedged_handler_is(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Bug 12: waiting on an empty mailbox counted as a stall, so an idle actor with a
    # stall_timeout was killed over and over.
    rec = Recorder()
    async with open_supervisor(
        [actor_spec("idle", Idle, stall_timeout=1.0)], backoff=None, on_event=rec
    ) as sup:
        await trio.sleep(10)  # idle for ten timeouts: a span in which nothing must happen
        assert sup.which_children()[0].restarts == 0
        whereis("idle").cast_nowait("work")
        await trio.sleep(10)
        assert sup.which_children()[0].restarts == 0
        t0 = trio.current_time()
        whereis("idle").cast_nowait("wedge")
        await until(sup, lambda: bool(rec.of(ChildExited)))
        assert trio.current_time() - t0 == 1.0
    assert rec.of(ChildExited)[0].reason is ExitReason.STALLED


async def test_idle_marks_a_wait_for_work(autojump_clock: trio.testing.MockClock) -> None:
    inbox_send, inbox = trio.open_memory_channel[int](10)

    async def worker(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        me = supervisors.current_child()
        task_status.started()
        while True:
            with me.idle():
                job = await inbox.receive()
            await trio.sleep(job)  # the work itself must finish within the stall timeout

    rec = Recorder()
    async with open_supervisor([ChildSpec("w", worker, stall_timeout=2.0)], on_event=rec) as sup:
        await trio.sleep(10)
        inbox_send.send_nowait(1)
        await trio.sleep(10)
        assert sup.which_children()[0].restarts == 0
        inbox_send.send_nowait(5)
        await until(sup, lambda: bool(rec.of(ChildExited)))
    assert rec.of(ChildExited)[0].reason is ExitReason.STALLED
