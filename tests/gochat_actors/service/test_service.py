"""open_service on the embedded defaults: every component up, no server needed."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import text

from gochat_actors import (
    ComponentUnavailable,
    GochatError,
    SettingsError,
    load_settings,
    log,
    open_service,
)
from gochat_actors.service import COMPONENTS
from supervisors import ChildSpec, ChildState
from supervisors.testing import kill

ROOT = Path(__file__).resolve().parents[3]


def settings_without_http() -> object:
    return load_settings(http={"enabled": False})


async def test_the_standard_tree_starts_in_order_and_every_component_works() -> None:
    settings = load_settings(http={"port": 0})
    async with open_service(settings) as service:
        ids = [info.id for info in service.supervisor.which_children()]
        assert ids == [
            "bridge",
            "log",
            "metrics",
            "http",
            "db",
            "cache",
            "locks",
            "ids",
            "producer",
        ]
        assert {info.state for info in service.supervisor.which_children()} == {ChildState.RUNNING}
        assert service.supervisor.health().ready
        first, second = service.ids.next_id(), service.ids.next_id()
        assert second > first
        await service.cache.set("user:1", b"ann", ttl=60)
        assert await service.cache.get("user:1") == b"ann"
        async with service.db.transaction() as session:
            await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
            await session.execute(text("INSERT INTO t (id) VALUES (1)"))
        async with service.db.reader() as session:
            assert (await session.execute(text("SELECT COUNT(*) FROM t"))).scalar_one() == 1
        async with service.locks.hold("room:1", ttl=5) as lease:
            assert lease.token >= 1
        meta = await service.producer.send("t", b"payload", key=b"k")
        assert meta.topic == "t"
        assert service.http.url is not None
        assert service.settings is settings


async def test_add_child_and_consumer_spec() -> None:
    got: list[bytes | None] = []
    done = trio.Event()

    async def worker(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started("mine")
        await trio.sleep_forever()

    async def processor(msg: object) -> None:
        got.append(getattr(msg, "value", None))
        done.set()

    async with open_service(load_settings(http={"enabled": False})) as service:
        assert await service.add_child(ChildSpec("mine", worker)) == "mine"
        await service.add_child(
            service.consumer_spec("c", topics=["topic-a"], group_id="g", processor=processor)
        )
        await service.producer.send("topic-a", b"hello")
        with trio.fail_after(10):
            await done.wait()
    assert got == [b"hello"]


async def test_a_subset_of_components() -> None:
    async with open_service(settings_without_http(), components=["cache", "ids"]) as service:  # type: ignore[arg-type]
        ids = [info.id for info in service.supervisor.which_children()]
        assert ids == ["bridge", "log", "metrics", "cache", "ids"]
        with pytest.raises(ComponentUnavailable, match=r"service\.db is not part of this service"):
            service.db  # noqa: B018
        assert isinstance(ComponentUnavailable("x"), GochatError)


async def test_unknown_components_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown components \['kafka'\]"):
        async with open_service(settings_without_http(), components=["kafka"]):  # type: ignore[arg-type]
            pass


def test_components_constant() -> None:
    assert COMPONENTS == ("http", "db", "cache", "locks", "ids", "producer")


async def test_run_stops_gracefully_on_sigterm() -> None:
    script = (
        "import trio, gochat_actors\n"
        "async def main(service):\n"
        "    print('READY', service.ids.next_id() > 0, flush=True)\n"
        "    await trio.sleep_forever()\n"
        "try:\n"
        "    print('result', gochat_actors.run(main, gochat_actors.load_settings("
        "http={'enabled': False}, log={'level': 'error'})), flush=True)\n"
        "except SystemExit as exc:\n"
        "    print('result exit', exc.code, flush=True)\n"
        "    raise\n"
    )
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    buf = b""
    with trio.fail_after(60):
        while b"READY" not in buf:
            chunk = await proc.stdout.receive_some()
            assert chunk, buf
            buf += chunk
        proc.send_signal(signal.SIGTERM)
        while b"result" not in buf or not buf.endswith(b"\n"):
            chunk = await proc.stdout.receive_some()
            assert chunk, buf
            buf += chunk
        assert await proc.wait() == 128 + signal.SIGTERM
    assert b"READY True" in buf
    assert b"result exit 143" in buf  # stopped gracefully, then the signal's exit code


# -- logging, trace IDs and startup errors (issues 22 and 27) --------------------------


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_every_line_follows_the_log_settings_from_the_first_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Regression (issue 22 point 8): lines written before the log child configured logging
    # went to stdout in console format, debug lines included, whatever [log] said.
    log.reset()  # unconfigured, as in a fresh process
    settings = load_settings(http={"enabled": False}, log={"outputs": ["stderr"]})
    async with open_service(settings):
        pass
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = json_lines(captured.err)  # every line is JSON
    assert lines
    assert all(line["level"] != "debug" for line in lines), lines
    assert not any("given but unused" in line["event"] for line in lines)
    assert any(line["event"] == "child started" and line["path"] == "bridge" for line in lines)


async def test_service_starting_lists_the_components_that_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Regression (issue 22 point 8): it listed every component whatever components= said.
    settings = load_settings(http={"enabled": False}, log={"outputs": ["stderr"]})
    async with open_service(settings, components=["cache", "ids"]):
        pass
    [line] = [x for x in json_lines(capsys.readouterr().err) if x["event"] == "service starting"]
    assert line["components"] == ["cache", "ids"]


async def test_logging_is_restored_when_the_service_exits(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Regression (issue 27 point 32): logging stayed configured after open_service exited.
    log.reset()
    root = logging.getLogger()
    level = root.level
    path = tmp_path / "service.log"
    settings = load_settings(http={"enabled": False}, log={"outputs": [str(path)]})
    async with open_service(settings):
        assert log.is_configured()
    assert not log.is_configured()
    assert root.level == level
    capsys.readouterr()

    # configured before: that configuration is back, the same handlers
    log.configure(log.LogSettings(format="console", outputs=("stderr",)), service="outer")
    handlers = list(root.handlers)
    async with open_service(settings):
        log.get_logger("t").info("inside")
    log.get_logger("t").info("after")
    assert list(root.handlers) == handlers
    err = capsys.readouterr().err
    assert "after" in err
    assert "service=outer" in err  # console format, the outer service name
    assert "inside" not in err
    assert "inside" in path.read_text(encoding="utf-8")
    log.reset()


async def test_a_log_file_in_a_missing_directory_is_a_settings_error(tmp_path: Path) -> None:
    settings = load_settings(
        http={"enabled": False}, log={"outputs": [str(tmp_path / "nope" / "x.log")]}
    )
    with pytest.raises(SettingsError) as exc:
        async with open_service(settings):
            pass  # pragma: no cover
    [problem] = exc.value.problems
    assert problem.path == "log.outputs"
    assert "directory does not exist" in problem.message


async def test_a_trace_bound_when_a_child_starts_does_not_follow_the_child(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Regression (issue 27 point 32): the child's whole first life carried the trace ID of
    # the task that started it, and its restarts had none.
    seen: list[str | None] = []
    all_seen = trio.Event()

    def record() -> None:
        seen.append(log.current_trace_id())
        if len(seen) == 6:
            all_seen.set()

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        record()
        task_status.started()
        await trio.sleep_forever()

    async def plain() -> None:  # no task_status: started by the supervisor
        record()
        await trio.sleep_forever()

    settings = load_settings(http={"enabled": False}, log={"outputs": ["stderr"]})
    with log.trace_context("opened-under-a-trace"):
        async with open_service(
            settings, components=["ids"], children=[ChildSpec("given", child)]
        ) as service:
            with log.trace_context("request-1"):
                await service.add_child(ChildSpec("added", child))
                await service.add_child(ChildSpec("plain", plain))
                assert log.current_trace_id() == "request-1"
            for name in ("given", "added", "plain"):
                kill(service.supervisor, name)
            with trio.fail_after(10):
                await all_seen.wait()
        assert log.current_trace_id() == "opened-under-a-trace"
    assert seen == [None] * 6


def run_script(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GOCHAT_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )


RUN_MAIN = (
    "import gochat_actors\n"
    "async def main(service):\n"
    "    print('MAIN RAN', flush=True)\n"
    "gochat_actors.run(main)\n"
)


def test_run_with_a_busy_port_prints_one_line_and_exits_1() -> None:
    # Regression (issue 22 point 3): an 85-line ExceptionGroup traceback.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_script(RUN_MAIN, GOCHAT_HTTP__PORT=str(port))
        debug = run_script(RUN_MAIN, GOCHAT_HTTP__PORT=str(port), GOCHAT_LOG__LEVEL="debug")
    assert result.returncode == 1
    assert "MAIN RAN" not in result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith("gochat: cannot start: ")
    assert f"127.0.0.1:{port}" in line
    assert "Address already in use" in line
    # at debug level, the traceback too
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("gochat: cannot start: ")


def test_run_with_invalid_settings_prints_the_problems_and_exits_1() -> None:
    result = run_script(RUN_MAIN, GOCHAT_HTTP__PORT="high", GOCHAT_DB__POOL_SIZE="0")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "gochat: invalid settings: 2 problems in settings:"
    assert any("http.port" in line and "GOCHAT_HTTP__PORT" in line for line in lines)
    assert any("db.pool_size" in line for line in lines)


def test_run_settings_given_in_code_and_service_options() -> None:
    script = (
        "import gochat_actors\n"
        "async def main(service):\n"
        "    return [i.id for i in service.supervisor.which_children()]\n"
        "settings = gochat_actors.load_settings(http={'enabled': False}, "
        "log={'level': 'error'})\n"
        "print(gochat_actors.run(main, settings, components=['ids']))\n"
    )
    result = run_script(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['bridge', 'log', 'metrics', 'ids']"


def test_run_raises_what_main_raises_as_it_is() -> None:
    # docstring: "What main raises is not touched"; it came out wrapped in trio's
    # ExceptionGroup('Exceptions from Trio nursery', [...]): `except Bug` missed it.
    import traceback

    import gochat_actors

    class Bug(Exception):
        pass

    bug = Bug("in main")

    async def main(service: object) -> None:
        raise bug

    settings = load_settings(http={"enabled": False}, log={"level": "error"})
    with pytest.raises(Bug) as info:
        gochat_actors.run(main, settings, components=[])
    assert info.value is bug
    assert "main" in [frame.name for frame in traceback.extract_tb(bug.__traceback__)]
