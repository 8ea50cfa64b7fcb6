"""The demo on the embedded defaults: it heals under chaos and loses nothing."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from gochat_actors import load_settings
from gochat_actors.demo import run_demo

ROOT = Path(__file__).resolve().parents[3]


async def test_demo_under_chaos_loses_nothing() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(
            http={"enabled": False},
            log={"level": "error"},
            db={"primary": f"sqlite+aiosqlite:///{scratch}/demo.db"},
        )
        summary = await run_demo(
            settings,
            duration=4.0,
            chaos=3.0,
            live=False,
            rate=100.0,
            seed=5,
            console=Console(file=io.StringIO()),
        )
    assert summary is not None
    assert summary.sent > 100
    assert summary.chaos_kills > 3
    assert summary.restarts >= summary.chaos_kills - 1
    assert summary.lost == 0
    assert summary.duplicate_ids == 0
    assert summary.compactor_overlaps == 0
    assert summary.persisted == summary.sent
    assert summary.ok


def test_demo_command_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    sent = tmp_path / "sent.txt"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gochat_actors.cli",
            "demo",
            "--no-live",
            "--duration",
            "3",
            "--chaos",
            "1",
            "--seed",
            "2",
            "--summary-json",
            str(out),
            "--sent-file",
            str(sent),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"GOCHAT_LOG__LEVEL": "warning", "GOCHAT_HTTP__PORT": "0", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "gochat-actors demo: summary" in result.stdout
    summary = json.loads(out.read_text())
    assert summary["ok"] is True
    assert summary["lost"] == 0
    assert summary["sent"] == len(sent.read_text().split())
