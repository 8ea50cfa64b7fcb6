"""The demo on the embedded defaults: it heals under chaos and loses nothing."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import trio
from rich.console import Console

from gochat_actors import load_settings
from gochat_actors.demo import ChatDemo, Ledger, Summary, run_demo
from gochat_actors.demo._main import LIVE_LOG, MAX_P99_MS, MIN_PROGRESS

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


# -- issue 22: the verdict judges progress; the demo's polish -------------------------


def _summary(**changes: object) -> Summary:
    base: dict[str, object] = {
        "sent": 1000, "persisted": 1000, "lost": 0, "duplicate_ids": 0, "redelivered": 0,
        "restarts": 3, "chaos_kills": 3, "compactions": 5, "compactor_overlaps": 0,
        "p50_ms": 20.0, "p99_ms": 300.0, "seconds": 30.0, "persisted_in_run": 990,
    }  # fmt: skip
    base.update(changes)
    return Summary(**base)  # type: ignore[arg-type]


def test_the_verdict_fails_when_progress_stalls() -> None:
    """Everything persisted in the drain is not ok: the run must have kept up."""
    assert _summary().ok
    assert not _summary(persisted_in_run=529).ok, "most of it persisted only after the run"
    assert not _summary(p99_ms=MAX_P99_MS + 1).ok, "p99 above the stated bound"
    assert _summary(persisted_in_run=int(MIN_PROGRESS * 1000)).ok


def test_demo_help_explains_the_summary_without_bool_placeholders() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gochat_actors.cli", "demo", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "<bool>" not in result.stdout
    assert "default: (off)" in result.stdout, "--chaos says what no value means"
    for row in ("persisted here", "overstayed", "machine ids", "verdict"):
        assert f"{row}:" in result.stdout


def test_the_live_view_counts_down_and_logs_under_state() -> None:
    assert LIVE_LOG.parts[0] == ".state"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(LIVE_LOG)], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "the live log is git-ignored"

    async def view() -> str:
        from gochat_actors.demo._main import _stats

        demo = ChatDemo.__new__(ChatDemo)
        demo.ledger = Ledger()
        table = _stats(demo, trio.current_time() - 12.0, None, duration=30.0)
        out = io.StringIO()
        Console(file=out, width=120).print(table)
        return out.getvalue()

    text = trio.run(view)
    assert "time left" in text
    assert "18 s of 30" in text
