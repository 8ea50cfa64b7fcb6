"""The programs in examples/ run as documented."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

from gochat_actors import load_settings

ROOT = Path(__file__).resolve().parents[1]


async def test_ten_line_service_answers_and_stops_on_sigterm() -> None:
    env = {**os.environ, "GOCHAT_HTTP__PORT": "0", "GOCHAT_LOG__LEVEL": "error"}
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(ROOT / "examples" / "ten_line_service.py")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    out = b""
    with trio.fail_after(60):
        while b"hello ann" not in out:
            chunk = await proc.stdout.receive_some()
            assert chunk, out
            out += chunk
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 128 + signal.SIGTERM  # stopped gracefully by SIGTERM
    assert b"here is an id: " in out


def test_production_settings_load_and_point_at_real_servers() -> None:
    settings = load_settings(ROOT / "examples" / "production.toml")
    assert settings.db.primary.reveal().startswith("mysql+aiomysql://")
    assert settings.cache.url.reveal().startswith("redis://")
    assert settings.mq.brokers == "127.0.0.1:9092"
    assert settings.idgen.etcd.reveal() == "http://127.0.0.1:2379"
