"""RuntimeMetrics: restarts from events (counted once per tree), gauges from snapshots,
bounded labels, and the sampling child on the trio clock."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from gochat_actors.metrics import Metrics, RuntimeMetrics
from supervisors import Backoff, ChildSpec, open_supervisor, supervisor_spec
from supervisors.testing import kill


async def idle(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def tree(*children: dict[str, Any]) -> dict[str, Any]:
    return {"id": "<root>", "path": "", "state": "running", "children": list(children)}


def node(path: str, state: str = "running", depth: int | None = None, *kids: Any) -> Any:
    mailbox = None if depth is None else {"depth": depth, "peak": depth, "size": 10}
    return {"path": path, "state": state, "mailbox": mailbox, "children": list(kids)}


def test_sample_counts_every_state_and_tracks_mailboxes() -> None:
    metrics = Metrics()
    runtime = RuntimeMetrics(metrics)
    runtime.sample(
        tree(
            node("a", "running", 2),
            node("g", "running", None, node("g/b", "restarting", 5), node("g/c", "failed")),
        )
    )
    assert value(metrics, "gochat_supervisor_children", state="running") == 2
    assert value(metrics, "gochat_supervisor_children", state="restarting") == 1
    assert value(metrics, "gochat_supervisor_children", state="failed") == 1
    assert value(metrics, "gochat_supervisor_children", state="stopping") == 0
    assert value(metrics, "gochat_actor_mailbox_depth", child="a") == 2
    assert value(metrics, "gochat_actor_mailbox_depth", child="g/b") == 5

    runtime.sample(tree(node("a", "running", 0)))  # g/b is gone: its series too
    assert value(metrics, "gochat_actor_mailbox_depth", child="a") == 0
    assert value(metrics, "gochat_actor_mailbox_depth", child="g/b") is None
    assert value(metrics, "gochat_supervisor_children", state="failed") == 0


def test_child_labels_are_bounded() -> None:
    metrics = Metrics()
    runtime = RuntimeMetrics(metrics, max_children=2)
    runtime.sample(tree(*(node(f"conn-{i}", "running", 1) for i in range(5))))
    assert value(metrics, "gochat_actor_mailbox_depth", child="conn-0") == 1
    assert value(metrics, "gochat_actor_mailbox_depth", child="conn-1") == 1
    assert value(metrics, "gochat_actor_mailbox_depth", child="conn-2") is None
    assert value(metrics, "gochat_actor_mailbox_depth", child="_other") == 3
    assert runtime.label("conn-1") == "conn-1"
    assert runtime.label("brand-new") == "_other"


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="max_children"):
        RuntimeMetrics(Metrics(), max_children=0)
    with pytest.raises(ValueError, match="interval"):
        RuntimeMetrics(Metrics(), interval=0)


async def test_restarts_counted_once_per_tree_however_many_attach(
    autojump_clock: trio.testing.MockClock,
) -> None:
    metrics = Metrics()
    group = supervisor_spec("g", [ChildSpec("inner", idle)])
    async with open_supervisor([ChildSpec("a", idle), group]) as sup:
        first, second = RuntimeMetrics(metrics), RuntimeMetrics(metrics)
        detach_first, detach_second = first.attach(sup), second.attach(sup)
        kill(sup, "g/inner")
        await trio.sleep(1)
        assert value(metrics, "gochat_actor_restarts_total", child="g/inner") == 1
        detach_first()
        detach_first()  # idempotent
        kill(sup, "a")
        await trio.sleep(1)
        assert value(metrics, "gochat_actor_restarts_total", child="a") == 1
        detach_second()
        kill(sup, "a")
        await trio.sleep(1)
        assert value(metrics, "gochat_actor_restarts_total", child="a") == 1  # detached


async def test_the_child_samples_the_root_every_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    metrics = Metrics()
    runtime = RuntimeMetrics(metrics, interval=10.0)
    inner = supervisor_spec("infra", [runtime.spec("metrics")])
    children = [inner, ChildSpec("a", idle)]
    backoff = Backoff(initial=60.0, maximum=60.0, jitter=0.0)
    async with open_supervisor(children, backoff=backoff) as sup:
        # sampled once before it was ready: every child was still starting
        assert value(metrics, "gochat_supervisor_children", state="starting") == 3
        kill(sup, "a")
        await trio.sleep(10.5)
        assert value(metrics, "gochat_supervisor_children", state="starting") == 0
        assert value(metrics, "gochat_supervisor_children", state="running") == 2
        assert value(metrics, "gochat_supervisor_children", state="restarting") == 1
        assert value(metrics, "gochat_actor_restarts_total", child="a") == 1
        assert repr(runtime) == "<RuntimeMetrics <Metrics namespace='gochat'> every 10s>"
    with pytest.raises(RuntimeError, match="RuntimeMetrics with supervisor=None"):
        await runtime.run()
