"""A private redis-server on a free port, for tests that pause it (``kill -STOP``) or
kill it. Never pause the shared server on 6379: other tests use it. The fixture waits
for the server to answer PING, and always resumes and kills it at teardown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests._servers import HOST, in_ci

__all__ = ["PrivateRedis", "private_redis"]

_READY_TIMEOUT = 10.0


@dataclass
class PrivateRedis:
    """A running private server: its ``url``, and pause/resume as ``kill -STOP``/``-CONT``."""

    url: str
    port: int
    process: subprocess.Popen[bytes]

    def pause(self) -> None:
        """``kill -STOP``: the server hangs (connections stay open, nothing answers)."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """``kill -CONT``."""
        os.kill(self.process.pid, signal.SIGCONT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(7) == b"+PONG\r\n"
    except OSError:
        return False


def _start(binary: str) -> PrivateRedis:
    port = _free_port()
    args = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"redis-server exited with {process.returncode}: {err[-500:]}")
        if _answers_ping(port):
            return PrivateRedis(f"redis://{HOST}:{port}/0", port, process)
        time.sleep(0.02)
    _stop(process)
    raise RuntimeError(f"redis-server on port {port} not ready after {_READY_TIMEOUT:g}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # a stopped process ignores SIGTERM
            os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if process.stderr:
        process.stderr.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A private redis-server, resumed and killed at teardown whatever the test did."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (Debian package redis-server)"
        if in_ci():
            pytest.fail(f"{reason} [CI is set: a missing server is a failure]", pytrace=False)
        pytest.skip(reason)
    try:
        server = _start(binary)
    except RuntimeError:  # the free port was taken meanwhile: one more try
        server = _start(binary)
    try:
        yield server
    finally:
        _stop(server.process)
