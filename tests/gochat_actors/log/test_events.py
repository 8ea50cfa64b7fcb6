"""event_logger: one structured line per supervision event, level by event, no secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog.testing
import trio
import trio.testing

from gochat_actors import log
from gochat_actors.log import LogSettings, event_logger
from supervisors import (
    Backoff,
    ChildExited,
    ChildOverstayed,
    ChildSpec,
    Event,
    ExitReason,
    Health,
    RestartIntensityExceeded,
    ShutdownReport,
    open_supervisor,
)
from supervisors.testing import kill

SECRET = "hunter2-s3cret"
DSN = f"redis://:{SECRET}@127.0.0.1:6379/0"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    log.reset()


async def idle(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_a_crash_restart_and_escalation_as_json_lines(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    log.configure(LogSettings(level="debug"), service="chat")
    backoff = Backoff(initial=0.5, maximum=0.5, jitter=0.0)

    async def storm() -> None:
        async with open_supervisor(
            [ChildSpec("cache", idle)], on_event=event_logger(), backoff=backoff, max_restarts=1
        ) as sup:
            handle = sup.child_handle("cache")
            assert handle is not None
            handle.set_health(Health.DEGRADED, f"slow {DSN}")
            for _ in range(2):
                kill(sup, "cache", ConnectionError(f"lost {DSN}"))
                await trio.sleep(1)

    with pytest.raises(RestartIntensityExceeded):
        await storm()

    out = capsys.readouterr().out
    assert SECRET not in out
    got = [(d["level"], d["event"], d["supervision"], d.get("path")) for d in lines(out)]
    assert got[:8] == [
        ("info", "child started", "ChildStarted", "cache"),
        ("info", "supervisor started", "SupervisorStarted", ""),
        ("warning", "child health changed", "HealthChanged", "cache"),
        ("warning", "child crashed", "ChildExited", "cache"),
        ("warning", "child restarting", "ChildRestarting", "cache"),
        ("info", "child started", "ChildStarted", "cache"),
        ("warning", "child crashed", "ChildExited", "cache"),
        ("error", "supervisor giving up: restart intensity exceeded", "Escalating", "cache"),
    ]
    crashed = next(d for d in lines(out) if d["event"] == "child crashed")
    assert crashed["logger"] == "gochat_actors.supervision"
    assert crashed["service"] == "chat"
    assert crashed["error_type"] == "ConnectionError"
    assert crashed["error"] == "lost redis://:***@127.0.0.1:6379/0"
    assert crashed["reason"] == "killed"
    assert crashed["will_restart"] is True
    restarting = next(d for d in lines(out) if d["event"] == "child restarting")
    assert (restarting["delay"], restarting["attempt"], restarting["cause"]) == (0.5, 0, "cache")
    health = next(d for d in lines(out) if d["event"] == "child health changed")
    assert health["reason"] == "slow redis://:***@127.0.0.1:6379/0"
    stopped = next(d for d in lines(out) if d["event"] == "supervisor stopped")
    assert (stopped["level"], stopped["reason"]) == ("error", "escalated")


def test_levels_of_the_other_events_and_masking_without_configured_logging() -> None:
    hook = event_logger()
    exc = OSError(f"cannot reach {DSN}")
    events: list[Event] = [
        ChildExited(
            supervisor="db",
            time=1.0,
            child="primary",
            reason=ExitReason.SHUTDOWN,
            exception=None,
            incarnation=1,
            will_restart=False,
        ),
        ChildOverstayed(supervisor="", time=2.0, child="slow", budget=1.0, stack=("  a\n",)),
        ShutdownReport(supervisor="", time=3.0, duration=1.0, overstayed=()),
        ChildExited(
            supervisor="",
            time=4.0,
            child="x",
            reason=ExitReason.EXCEPTION,
            exception=exc,
            incarnation=2,
            will_restart=False,
        ),
        Event(supervisor="", time=5.0),
    ]
    with structlog.testing.capture_logs() as captured:  # no processors: our own masking
        for event in events:
            hook(event)
    assert [(c["log_level"], c["event"], c["path"]) for c in captured] == [
        ("info", "child stopped", "db/primary"),
        ("error", "child overstayed its shutdown budget", "slow"),
        ("debug", "supervisor shutdown clean", ""),
        ("warning", "child crashed", "x"),
        ("debug", "supervision event", ""),
    ]
    assert captured[1]["stack"] == "  a\n"
    assert captured[3]["error"] == "cannot reach redis://:***@127.0.0.1:6379/0"
    assert SECRET not in repr(captured)
