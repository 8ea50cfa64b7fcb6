"""etcd paused (``kill -STOP``) for longer than the TTL, on a private etcd: generators
stop issuing before their lease could expire, and after ``kill -CONT`` go on with no
duplicate."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from gochat_actors import Dsn, MachineIdLost
from gochat_actors.idgen import IdGenerator, IdGenSettings
from supervisors import open_supervisor
from tests._servers import in_ci

TTL, MARGIN = 2.0, 0.5  # 2 s is etcd's smallest lease TTL


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")
    except (OSError, ValueError):
        return False


@pytest.fixture
def private_etcd(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private etcd on free ports (never the shared one on 2379: it gets paused)."""
    binary = shutil.which("etcd")
    if binary is None:
        message = "the etcd binary is not installed (Debian package etcd-server)"
        if in_ci():
            pytest.fail(message + " [CI is set: a missing server is a failure]", pytrace=False)
        pytest.skip(message)
    client, peer = _free_port(), _free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    log = (tmp_path / "etcd.log").open("wb")
    proc = subprocess.Popen(
        [binary, "--data-dir", str(tmp_path / "data"), "--name", "default",
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", f"default={peer_url}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"private etcd did not become healthy:\n{(tmp_path / 'etcd.log').read_text()}"
                )
            time.sleep(0.05)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


async def test_paused_etcd_stops_issuing_before_the_lease_could_expire(
    private_etcd: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, proc = private_etcd
    settings = IdGenSettings(etcd=Dsn(url), key_prefix="/pause/", lease_ttl=TTL, margin=MARGIN)
    gens = [IdGenerator(settings) for _ in range(3)]
    issued: list[list[int]] = [[] for _ in gens]
    last_ok = [0.0 for _ in gens]  # when the last successful call *started*
    async with open_supervisor([g.spec(f"g{i}") for i, g in enumerate(gens)]):

        async def hammer(stop: trio.Event) -> None:
            while not stop.is_set():
                for i, g in enumerate(gens):
                    started = time.monotonic()
                    try:
                        issued[i] += g.next_ids(50)
                    except MachineIdLost:
                        continue
                    last_ok[i] = started
                await trio.sleep(0.002)

        async with trio.open_nursery() as nursery:
            stop = trio.Event()
            nursery.start_soon(hammer, stop)
            await trio.sleep(1.0)
            paused_at = time.monotonic()
            os.kill(proc.pid, signal.SIGSTOP)
            # each generator's deadline: its last acknowledged keepalive's send time
            # + TTL - margin; etcd cannot expire the lease before that + margin
            deadlines = [g.statistics().valid_until for g in gens]
            await trio.sleep(TTL + 2.0)
            stopped = [not g.ready for g in gens]
            during_pause = list(last_ok)
            with pytest.raises(MachineIdLost):
                gens[0].next_id()
            os.kill(proc.pid, signal.SIGCONT)
            for g in gens:
                await g.wait_ready(timeout=20.0)
            resumed = [len(batch) for batch in issued]
            await trio.sleep(0.5)
            stop.set()
    assert all(stopped)
    for i in range(len(gens)):
        assert deadlines[i] <= paused_at + TTL - MARGIN
        assert during_pause[i] < deadlines[i], (during_pause[i] - paused_at, deadlines[i])
        assert len(issued[i]) > resumed[i]  # it issued again after kill -CONT
        assert issued[i] == sorted(set(issued[i]))
    every = list(itertools.chain.from_iterable(issued))
    assert len(set(every)) == len(every)
