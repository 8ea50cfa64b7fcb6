"""SIGTERM turns into a graceful stop of the tree and exit code 128+15; a second signal
cuts the budgets, and forces the exit if a child still ignores cancellation."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[2]


async def start_app(*args: str) -> tuple[trio.Process, trio.abc.ReceiveStream]:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.supervisors._signal_app", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    return proc, proc.stdout


async def read_until(stream: trio.abc.ReceiveStream, marker: bytes, buf: bytearray) -> None:
    while marker not in buf:
        chunk = await stream.receive_some()
        if not chunk:
            raise AssertionError(f"stream ended before {marker!r}; got {bytes(buf)!r}")
        buf += chunk


async def test_sigterm_stops_the_tree_in_reverse_order_and_exits_143() -> None:
    proc, out = await start_app()
    buf = bytearray()
    with trio.fail_after(30):
        await read_until(out, b"ready\n", buf)
        proc.send_signal(signal.SIGTERM)
        await read_until(out, b"exited\n", buf)
        code = await proc.wait()
    text = buf.decode()
    assert code == 128 + signal.SIGTERM
    assert text.splitlines() == [
        "ready",
        "stopping",
        "stopped c",
        "stopped b",
        "stopped a",
        "overstayed=[]",
        "exited",
    ]


async def test_second_signal_ends_the_budgets_at_once() -> None:
    proc, out = await start_app("slow")
    buf = bytearray()
    with trio.fail_after(30):  # b's cleanup alone would take 60 s
        await read_until(out, b"ready\n", buf)
        proc.send_signal(signal.SIGTERM)
        await read_until(out, b"stopped c\n", buf)
        proc.send_signal(signal.SIGINT)
        await read_until(out, b"exited\n", buf)
        code = await proc.wait()
    assert code == 128 + signal.SIGTERM  # the signal that stopped it
    assert buf.decode().splitlines()[-4:] == [
        "stopped b",
        "stopped a",
        "overstayed=[]",
        "exited",
    ]


async def test_a_second_signal_forces_the_exit_past_a_child_that_ignores_cancellation() -> None:
    proc, out = await start_app("stuck")
    buf = bytearray()
    with trio.fail_after(30):  # b shields its cleanup for 60 s within a 120 s budget
        await read_until(out, b"ready\n", buf)
        proc.send_signal(signal.SIGTERM)
        await read_until(out, b"stopped c\n", buf)
        proc.send_signal(signal.SIGINT)
        code = await proc.wait()
        buf += await out.receive_some() or b""
    assert code == 128 + signal.SIGINT
    assert b"stopped b" not in buf
    assert b"exited" not in buf  # forced: nothing more ran
