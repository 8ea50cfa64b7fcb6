"""The ``gochat-actors`` command, run as a subprocess (and once in-process)."""

from __future__ import annotations

import doctest
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from gochat_actors.cli import main
from supervisors import Backoff, ChildSpec
from supervisors.testing import kill
from tests._private import free_port

from ..http._helpers import DSN, SECRET, idle, serving

GOOD = f"""
[service]
name = "chat-gateway"

[db]
primary = "{DSN}"

[cache]
url = "redis://:{SECRET}@127.0.0.1:6379/0"
"""

BAD = f"""
[db]
primary = "postgres://app:{SECRET}@db/chat"
pool_sise = 3

[cache]
url = "redis://:{SECRET}@cache:99999/0"
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOCHAT_")}
    env.update(extra)
    return env


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gochat_actors.cli", *args],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=60,
        check=False,
    )


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "chat.toml"
    path.write_text(GOOD)
    return path


def test_check_config_prints_masked_values_and_their_sources(good_file: Path) -> None:
    result = cli("check-config", str(good_file), GOCHAT_HTTP__PORT="0")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert SECRET not in out + result.stderr
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert "app:***@127.0.0.1:3306/chat" in lines["db.primary"]
    assert f"file {good_file}" in lines["db.primary"]
    assert "GOCHAT_DB__PRIMARY" in lines["db.primary"]
    assert "redis://:***@127.0.0.1:6379/0" in lines["cache.url"]
    assert "env GOCHAT_HTTP__PORT" in lines["http.port"]
    assert "default" in lines["log.level"]


def test_check_config_json_reads_gochat_config(good_file: Path) -> None:
    result = cli("check-config", "--json", GOCHAT_CONFIG=str(good_file), GOCHAT_LOG__LEVEL="debug")
    assert result.returncode == 0, result.stderr
    rows = {row["path"]: row for row in json.loads(result.stdout)}
    assert rows["service.name"] == {
        "path": "service.name",
        "value": "chat-gateway",
        "source": f"file {good_file}",
        "env": "GOCHAT_SERVICE__NAME",
    }
    assert rows["log.level"]["source"] == "env GOCHAT_LOG__LEVEL"
    assert rows["db.primary"]["value"] == "mysql+aiomysql://app:***@127.0.0.1:3306/chat"
    assert rows["http.port"] == {
        "path": "http.port",
        "value": 9464,
        "source": "default",
        "env": "GOCHAT_HTTP__PORT",
    }
    assert SECRET not in result.stdout


def test_check_config_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    env = {"GOCHAT_HTTP__PORT": "70000", "GOCHAT_DB__MAX_LAG": "soon"}
    result = cli("check-config", str(bad), **env)
    assert result.returncode == 1
    assert SECRET not in result.stdout + result.stderr
    report = result.stderr
    assert "5 problems in settings" in report
    expected = [
        ("http.port", "env GOCHAT_HTTP__PORT", "less than or equal to 65535"),
        ("db.primary", f"file {bad}", "unsupported scheme 'postgres'"),
        ("db.max_lag", "env GOCHAT_DB__MAX_LAG", "valid number"),
        ("db.pool_sise", f"file {bad}", "unknown key"),
        ("cache.url", f"file {bad}", "port must be an integer in 1..65535"),
    ]
    rows = [line for line in report.splitlines() if "│" in line]
    for path, source, message in expected:
        assert any(path in r and source in r and message in r for r in rows), (path, report)

    as_json = cli("check-config", "--json", str(bad), **env)
    assert as_json.returncode == 1
    problems = json.loads(as_json.stdout)["problems"]
    assert sorted(p["path"] for p in problems) == sorted(p for p, _, _ in expected)


def test_check_config_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # in-process: main() returns the exit code
    assert main(["check-config", str(tmp_path / "nope.toml")]) == 1
    assert "no such file" in capsys.readouterr().err


async def test_tree_once_against_a_live_server() -> None:
    never = Backoff(initial=3600.0, maximum=3600.0, jitter=0.0)
    async with serving(ChildSpec("worker", idle), ChildSpec("db", idle), backoff=never) as s:
        kill(s.sup, "db", ConnectionError(f"lost {DSN}"))
        url = str(s.endpoints.url)
        result = await trio.run_process(
            [sys.executable, "-m", "gochat_actors.cli", "tree", "--url", url, "--once"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=clean_env(),
        )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert f"{url}/debug/tree" in out
    assert "not ready" in out
    tree = [line for line in out.splitlines() if "──" in line]
    assert any("http" in line and "running" in line for line in tree)
    assert any("worker" in line and "running" in line for line in tree)
    [db] = [line for line in tree if " db " in line]
    assert "restarting" in db
    assert "app:***@127.0.0.1" in db
    assert SECRET not in out


def test_tree_reports_an_unreachable_url_and_exits_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("tree", "--url", url, "--once", "--timeout", "2")
    assert result.returncode == 1
    assert f"error: cannot reach {url}/debug/tree" in result.stderr


def test_tree_never_shows_the_password_of_its_url(capsys: pytest.CaptureFixture[str]) -> None:
    # The endpoints may sit behind a proxy with basic auth: the error printed the URL
    # as given, password included (docs/config.md: never in error messages).
    from gochat_actors.cli._tree import watch_tree

    url = f"http://ops:{SECRET}@127.0.0.1:{free_port()}"
    assert watch_tree(url, once=True, timeout=2) == 1
    captured = capsys.readouterr()
    assert SECRET not in captured.err + captured.out
    assert "cannot reach http://ops:***@127.0.0.1:" in captured.err


def test_demo_runs_and_exits_0() -> None:
    # Regression (issue 28): the stdout checks sat under an `if` that was never true.
    result = cli("demo", "--no-live", "--duration", "0.5", "--chaos", "0")
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    assert "summary" in result.stdout
    assert int(rows["sent"]) > 0
    assert int(rows["persisted"]) > 0
    assert rows["lost"] == "0"
    assert rows["duplicate ids"] == "0"
    assert rows["verdict"].startswith("ok")
    logs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert any(line["event"] == "service starting" for line in logs)  # [log]: JSON on stdout


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "gochat-actors"
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for command in ("check-config", "tree", "demo"):
        assert command in result.stdout


def test_main_passes_exit_codes_through(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_the_docstring_examples_of_the_tree_module() -> None:
    from gochat_actors.cli import _tree

    result = doctest.testmod(_tree)
    assert (result.attempted, result.failed) == (1, 0)
    assert _tree.tree_url("http://h:1/debug/tree/") == "http://h:1/debug/tree"


def test_check_config_catches_a_log_output_in_a_missing_directory(tmp_path: Path) -> None:
    # Regression (issue 22 point 4): check-config passed it; the service then failed at start.
    missing = tmp_path / "no-such-dir" / "x.log"
    path = tmp_path / "chat.toml"
    path.write_text(f'[log]\noutputs = ["stdout", "{missing}"]\n', encoding="utf-8")
    result = cli("check-config", str(path))
    assert result.returncode == 1, result.stdout
    [row] = [line for line in result.stderr.splitlines() if "log.outputs" in line]
    assert f"file {path}" in row
    assert "directory does not" in row  # the table may wrap the end
    as_json = cli("check-config", "--json", str(path))
    assert as_json.returncode == 1
    [problem] = json.loads(as_json.stdout)["problems"]
    assert problem["path"] == "log.outputs"
    assert problem["message"] == f"{missing}: directory does not exist ({missing.parent})"


def test_demo_with_a_busy_http_port_prints_one_line_and_exits_1() -> None:
    # Regression (issue 22 point 3): the demo printed an 85-115 line ExceptionGroup.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ("demo", "--no-live", "--duration", "0.5", "--chaos", "0")
        result = cli(*args, GOCHAT_HTTP__PORT=str(port), GOCHAT_LOG__OUTPUTS="stdout")
        debug = cli(*args, GOCHAT_HTTP__PORT=str(port), GOCHAT_LOG__LEVEL="debug")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("gochat-actors demo: cannot start: ")
    assert f"127.0.0.1:{port}: Address already in use" in line
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("gochat-actors demo: cannot start: ")


def test_demo_with_invalid_settings_lists_the_problems_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD)
    result = cli("demo", "--no-live", "--duration", "0.5", "--config", str(bad))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "gochat-actors demo: invalid settings: 3 problems in settings:"
    assert any("db.pool_sise" in line and "unknown key" in line for line in lines)
