"""Shutdown: reverse order, budgets, overstayers named with their stack, threads."""

from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

import supervisors
from supervisors import (
    ChildOverstayed,
    ChildSpec,
    Supervisor,
    SupervisorNotRunning,
    open_supervisor,
)

from ._helpers import Controlled, Recorder


async def test_leaving_the_block_stops_children_in_reverse_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    async with open_supervisor([ChildSpec(n, ctl, args=(n,)) for n in "abc"]) as sup:
        pass
    assert ctl.log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    report = sup.shutdown_report
    assert report is not None
    assert report.clean


async def test_graceful_cleanup_within_budget_is_not_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cleaned = []

    async def tidy(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with supervisors.cleanup_scope():
                await trio.sleep(0.5)  # flushing, within the 1 s budget
                cleaned.append(trio.current_time())

    async with open_supervisor([ChildSpec("tidy", tidy, shutdown=1.0)]) as sup:
        t0 = trio.current_time()
    assert cleaned == [pytest.approx(t0 + 0.5)]
    assert sup.shutdown_report is not None
    assert sup.shutdown_report.clean


async def test_bounded_cleanup_is_cut_at_the_budget(autojump_clock: trio.testing.MockClock) -> None:
    reached: list[str] = []

    async def slow(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with supervisors.cleanup_scope():
                await trio.sleep(10)
                reached.append("end of cleanup")

    async with open_supervisor([ChildSpec("slow", slow, shutdown=2.0)]):
        t0 = trio.current_time()
    assert trio.current_time() - t0 == pytest.approx(2.0)
    assert reached == []


async def test_a_self_shielded_child_overstays_and_is_named(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rec = Recorder()

    async def stubborn(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(7)  # ignores its 1 s budget

    children = [
        ChildSpec("first", stubborn, shutdown=1.0),
        ChildSpec("stubborn", stubborn, shutdown=1.0),
    ]
    async with open_supervisor(children, on_event=rec) as sup:
        t0 = trio.current_time()
    # Both overstay; the supervisor moves on at each deadline and returns as soon as the
    # last one lets go: stubborn at t0+7, first (stopped at t0+1) at t0+8.
    assert trio.current_time() - t0 == pytest.approx(8.0)
    report = sup.shutdown_report
    assert report is not None
    assert [o.path for o in report.overstayed] == ["stubborn", "first"]
    assert [o.overstayed_by for o in report.overstayed] == [pytest.approx(6.0), pytest.approx(6.0)]
    assert any("await trio.sleep(7)" in line for line in report.overstayed[0].stack)
    assert [e.child for e in rec.of(ChildOverstayed)] == ["stubborn", "first"]


async def test_work_in_a_thread_is_abandoned_at_the_deadline() -> None:
    release = threading.Event()
    entered = trio.Event()

    async def blocking(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        entered.set()
        await supervisors.to_thread(release.wait, 30)

    try:
        async with open_supervisor([ChildSpec("blocking", blocking, shutdown=0.2)]) as sup:
            await entered.wait()
            t0 = trio.current_time()
        elapsed = trio.current_time() - t0
    finally:
        release.set()
    assert 0.2 <= elapsed < 5.0  # at the deadline, not when the thread ends (30 s)
    report = sup.shutdown_report
    assert report is not None
    assert [o.path for o in report.overstayed] == ["blocking"]


async def test_thread_that_finishes_within_the_budget_is_waited_for() -> None:
    release = threading.Event()
    entered = trio.Event()
    results: list[bool] = []

    async def blocking(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        entered.set()
        results.append(await supervisors.to_thread(release.wait, 30))

    async with open_supervisor([ChildSpec("blocking", blocking, shutdown=10)]) as sup:
        await entered.wait()
        sup.shutdown_nowait()
        release.set()
    assert sup.shutdown_report is not None
    assert sup.shutdown_report.clean


async def test_to_thread_returns_and_raises() -> None:
    assert await supervisors.to_thread(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        await supervisors.to_thread(lambda: 1 / 0)


async def test_shutdown_returns_the_report_and_refuses_later_work(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    sup = Supervisor([ChildSpec("a", ctl, args=("a",))])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        report = await sup.shutdown()
    assert report.clean
    assert ctl.log == ["start a", "stop a"]
    with pytest.raises(SupervisorNotRunning):
        await sup.start_child(ChildSpec("b", ctl, args=("b",)))


async def test_cancelling_the_owner_still_stops_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Controlled()
    with trio.move_on_after(1):
        async with open_supervisor([ChildSpec(n, ctl, args=(n,)) for n in "ab"]):
            await trio.sleep_forever()
    assert ctl.log == ["start a", "start b", "stop b", "stop a"]


async def test_a_childs_own_timeout_around_to_thread_is_not_an_overstay() -> None:
    # Bug 11: any cancellation of to_thread counted as abandonment at the stop.
    release = threading.Event()
    timed_out = trio.Event()

    async def impatient(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        with trio.move_on_after(0.05):
            await supervisors.to_thread(release.wait, 30)
        timed_out.set()
        await trio.sleep_forever()

    try:
        async with open_supervisor([ChildSpec("i", impatient)]) as sup:
            with trio.fail_after(10):
                await timed_out.wait()
    finally:
        release.set()
    assert sup.shutdown_report is not None
    assert sup.shutdown_report.clean
