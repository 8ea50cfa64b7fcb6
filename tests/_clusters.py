"""Clustered servers on free loopback ports, started and stopped by the tests (issue 20).

- ``etcd_cluster_running()``: three etcd members (optionally with auth, or over TLS);
  ``leader()``, ``move_leader()``, ``kill()``/``pause()``/``resume()``/``restart()``.
- ``redis_sentinel_running()``: a master, one replica and three sentinels;
  ``master_address()``, ``kill_master()``, ``wait_failover()``.
- ``redis_cluster_running()``: three cluster-enabled masters (no replicas).
- ``redis_tls_running()`` and ``mariadb_tls_running()``: one server each, TLS only
  (certificates made here with ``trustme``; keys live in a temporary folder only).

Each context manager records the pid of every process it starts (restarts included) and
stops exactly those at exit, resumed first (a stopped process ignores SIGTERM), even
when the test failed. A missing binary skips the test locally and FAILS it when ``CI``
is set. Everything is blocking on purpose: it runs in fixtures, outside ``trio.run``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests._private import free_port, require_binary
from tests._servers import HOST, RespValue, _Resp, in_ci
from tests.gochat_actors.db._mariadb_pair import (
    _SMALL,
    MariaDBServer,
    _chown_tree,
    _run_as,
    _spawn,
    _wait_ready,
    find_binaries,
)

__all__ = [
    "ClusterTimeout",
    "EtcdCluster",
    "EtcdMember",
    "MariaDBTLS",
    "Node",
    "Processes",
    "RedisCluster",
    "RedisConnection",
    "RedisSentinel",
    "RedisTLS",
    "TLSFiles",
    "etcd_cluster_running",
    "make_tls_files",
    "mariadb_tls_running",
    "redis_call",
    "redis_cluster_running",
    "redis_sentinel_running",
    "redis_tls_running",
]

READY_TIMEOUT = 30.0
POLL = 0.05
CLUSTER_BUS_OFFSET = 10000  # a Redis Cluster node also listens on port + 10000

# Ports given to a server by this process: never handed out twice, so a port that a
# killed server freed is not taken by the next cluster while a replica still dials it.
_handed_out: set[int] = set()


class ClusterTimeout(TimeoutError):
    """A cluster did not reach the state a helper waited for (the message has the logs)."""


# ---- ports ----------------------------------------------------------------


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, cluster_bus: bool = False) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1, none handed out before by this process;
    with ``cluster_bus``, each at most 55535 with its bus port (+10000) free too.

    >>> a, b = free_ports(2)
    >>> a != b
    True
    """
    ports: list[int] = []
    for _ in range(1000 * count):
        port = free_port()
        if port in _handed_out:
            continue
        if cluster_bus and not (
            port + CLUSTER_BUS_OFFSET <= 65535 and _bindable(port + CLUSTER_BUS_OFFSET)
        ):
            continue
        _handed_out.add(port)
        ports.append(port)
        if len(ports) == count:
            return ports
    raise OSError(f"no {count} free ports on {HOST}")


# ---- processes ------------------------------------------------------------


class Processes:
    """Every process a cluster started, in order: ``stop_all()`` stops exactly these pids."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    @property
    def pids(self) -> list[int]:
        """The pid of every process started so far (restarts add one)."""
        return [p.pid for p in self.started]

    def spawn(self, args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``args`` in its own session, output appended to ``log``; record its pid."""
        env = dict(os.environ)
        if platform.machine() == "aarch64":  # as scripts/services: etcd refuses arm64 else
            env["ETCD_UNSUPPORTED_ARCH"] = "arm64"
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        self.started.append(process)
        return process

    def adopt(self, process: subprocess.Popen[bytes]) -> None:
        """Record a process started elsewhere (stopped with the others)."""
        self.started.append(process)

    def stop_all(self, grace: float = 10.0) -> None:
        """Stop every recorded process, the last started first.

        One after the other: etcd members told to stop together each try to hand their
        leadership to a peer that is stopping too, and take seconds; in turn they don't.
        """
        for process in reversed(self.started):
            stop_process(process, grace)


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Resume (a stopped process ignores SIGTERM), SIGTERM, reap; SIGKILL after ``grace``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@dataclass
class Node:
    """One server of a cluster: its address, its log, and the signals a test sends it.

    ``restart()`` starts the same command line again (same data folder): a new pid,
    recorded like the first.
    """

    name: str
    port: int
    args: list[str]
    log: Path
    processes: Processes = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    paused: bool = False

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        """The pid of its current process."""
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process.pid

    @property
    def running(self) -> bool:
        """True while its current process has not exited (paused counts as running)."""
        return self.process is not None and self.process.poll() is None

    @property
    def answering(self) -> bool:
        """Running and not paused."""
        return self.running and not self.paused

    def start(self) -> None:
        """Start its process (after a kill or a stop; the data folder is kept)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.process = self.processes.spawn(self.args, self.log)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL, and wait until it is gone (no shutdown, no goodbye to its peers)."""
        if self.process is not None and self.running:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: it hangs; its connections stay open and nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT."""
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def stop(self, grace: float = 10.0) -> None:
        """Resume, SIGTERM, wait; SIGKILL if it lingers past ``grace`` seconds."""
        if self.process is not None:
            stop_process(self.process, grace)
        self.paused = False

    def restart(self) -> None:
        """Stop it if it runs (a killed one is just started), then start it again."""
        self.stop()
        self.start()

    def tail(self, lines: int = 15) -> str:
        """The end of its log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _logs(nodes: Iterable[Node]) -> str:
    return "\n".join(f"--- {n.name} (port {n.port}) ---\n{n.tail()}" for n in nodes)


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, nodes: Sequence[Node] = ()
) -> float:
    """Poll ``check`` until it returns True; the seconds it took. ``ClusterTimeout`` (with
    the nodes' log tails) after ``timeout`` seconds, or at once when a node that should
    run has exited."""
    start = time.monotonic()
    deadline = start + timeout
    while not check():
        dead = [n for n in nodes if n.process is not None and n.process.poll() is not None]
        if dead or time.monotonic() > deadline:
            why = f"{', '.join(n.name for n in dead)} exited" if dead else f"{timeout:g}s passed"
            raise ClusterTimeout(f"{what}: not reached ({why})\n{_logs(nodes)}")
        time.sleep(POLL)
    return time.monotonic() - start


@contextlib.contextmanager
def _cluster_scope(prefix: str) -> Iterator[tuple[Path, Processes]]:
    """A temporary folder and a process record; at exit every recorded process is
    stopped and the folder removed."""
    scratch = Path(tempfile.mkdtemp(prefix=f"gochat-{prefix}-"))
    processes = Processes()
    try:
        yield scratch, processes
    finally:
        processes.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _starting(what: str) -> Iterator[None]:
    """Around a start-up only: a cluster that does not come up fails the test (a
    helper's ClusterTimeout in the test body stays a ClusterTimeout)."""
    try:
        yield
    except ClusterTimeout as exc:
        pytest.fail(f"the private {what} did not come up: {exc}", pytrace=False)


def _run(args: list[str], timeout: float = 120.0) -> None:
    """Run a set-up command to its end; ``ClusterTimeout`` with its output when it fails."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        raise ClusterTimeout(f"{Path(args[0]).name} exited with {done.returncode}:\n{output}")


def _missing(reason: str) -> None:
    """Skip the test, or FAIL it when ``CI`` is set."""
    if in_ci():
        pytest.fail(f"{reason} [CI is set: a missing server is a failure]", pytrace=False)
    pytest.skip(reason)


# ---- TLS certificates -----------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    """PEM files made by ``make_tls_files``: a CA, a server certificate for
    ``127.0.0.1``/``localhost`` and a client certificate, with their keys."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self, *, with_cert: bool = True) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` trusting the CA (and presenting the client certificate).

        >>> import tempfile, pathlib
        >>> ctx = make_tls_files(pathlib.Path(tempfile.mkdtemp())).client_context()
        >>> ctx.verify_mode == ssl.CERT_REQUIRED
        True
        """
        context = ssl.create_default_context(cafile=str(self.ca))
        if with_cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def make_tls_files(directory: Path) -> TLSFiles:
    """Write a fresh CA, server and client certificate (ECDSA) into ``directory``."""
    import trustme  # here, not at the top: conftest imports this module in every session

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="gochat-actors tests")
    server = ca.issue_cert(HOST, "localhost", common_name="localhost")
    client = ca.issue_cert("gochat-client.localhost", common_name="gochat-client")
    files = TLSFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    for key in (files.server_key, files.client_key):
        key.chmod(0o600)
    return files


# ---- Redis: a blocking RESP client to any port ----------------------------


class RedisConnection(_Resp):
    """``_servers._Resp`` (``call(*args)``, ``close()``) to any port, optionally over TLS.

    Keep one open for ``WAIT``: it counts the replicas that have this connection's own
    last write, so on a fresh connection it has nothing to wait for and returns at once.
    """

    def __init__(
        self, address: str | int, tls: ssl.SSLContext | None = None, timeout: float = 2.0
    ) -> None:
        port = int(str(address).rsplit(":", 1)[-1])
        sock = socket.create_connection((HOST, port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=HOST)
        self._sock = sock
        self._file = sock.makefile("rb")

    def __enter__(self) -> RedisConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def redis_call(
    address: str | int, *args: str | bytes, tls: ssl.SSLContext | None = None
) -> RespValue:
    """One command on a fresh connection to ``127.0.0.1:port``; Redis errors raise
    RuntimeError, a refused or silent server OSError."""
    with RedisConnection(address, tls) as conn:
        return conn.call(*args)


def _text(value: RespValue) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _info(address: str | int, section: str, tls: ssl.SSLContext | None = None) -> dict[str, str]:
    """``INFO section`` as a dict (``{}`` when the server does not answer)."""
    try:
        raw = _text(redis_call(address, "INFO", section, tls=tls))
    except (OSError, RuntimeError):
        return {}
    pairs = (line.split(":", 1) for line in raw.splitlines() if ":" in line)
    return dict(pairs)


def _pairs(value: RespValue) -> dict[str, str]:
    """A flat RESP ``[k1, v1, k2, v2, ...]`` reply as a dict."""
    items = [_text(v) for v in value] if isinstance(value, list) else []
    return dict(zip(items[::2], items[1::2], strict=False))


# ---- etcd cluster ---------------------------------------------------------


@functools.cache
def _install_etcdctl() -> None:
    """As scripts/services does for etcd-server: as root, ``apt-get install etcd-client``
    once per session (its output in a temporary file, shown when it fails)."""
    if shutil.which("etcdctl") or os.getuid() != 0 or not shutil.which("apt-get"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with tempfile.TemporaryFile() as out:
        subprocess.run(["apt-get", "update", "-qq"], stdout=out, stderr=out, env=env, check=False)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "etcd-client"],
            stdout=out,
            stderr=out,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            out.seek(0)
            tail = out.read().decode(errors="replace")[-2000:]
            if in_ci():
                pytest.fail(f"apt-get install etcd-client failed:\n{tail}", pytrace=False)


@dataclass
class EtcdMember(Node):
    """One etcd member: ``url`` (client), ``peer_url``, and ``member_id`` (the number
    ``etcdctl member list`` shows; ``hex_id`` for ``move-leader``)."""

    url: str = ""
    peer_url: str = ""
    member_id: int = 0

    @property
    def hex_id(self) -> str:
        """The member id as etcdctl prints it (``8e9e05c52164694d``)."""
        return f"{self.member_id:x}"


class EtcdctlError(RuntimeError):
    """``etcdctl`` exited non-zero (the message has its stderr)."""


@dataclass
class EtcdCluster:
    """Three etcd members on 127.0.0.1 (``heartbeat 100 ms``, ``election timeout 1 s``).

    ``url`` is the comma-separated member list, as ``[idgen] etcd`` takes it; with auth,
    ``user``/``password`` are root's; with TLS, ``tls`` holds the CA and client files
    (the members require a client certificate when ``client_cert_required``).
    """

    members: list[EtcdMember]
    processes: Processes = field(repr=False)
    etcdctl_binary: str = field(repr=False)
    user: str = ""
    password: str = ""
    tls: TLSFiles | None = None
    client_cert_required: bool = False
    start_seconds: float = 0.0

    @property
    def urls(self) -> list[str]:
        """Each member's client URL."""
        return [m.url for m in self.members]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:A,http://127.0.0.1:B,http://127.0.0.1:C``."""
        return ",".join(self.urls)

    @property
    def pids(self) -> list[int]:
        """Every pid started for this cluster (restarts included)."""
        return self.processes.pids

    def etcdctl(
        self, *args: str, members: Sequence[EtcdMember] | None = None, timeout: float = 10.0
    ) -> str:
        """Run ``etcdctl`` (API 3) against ``members`` (default: all), with root's
        credentials and the TLS files when the cluster has them; its stdout."""
        endpoints = ",".join(m.url for m in (self.members if members is None else members))
        command = [
            self.etcdctl_binary,
            f"--endpoints={endpoints}",
            "--dial-timeout=2s",
            f"--command-timeout={max(1, int(timeout) - 1)}s",
        ]
        if self.user:
            command.append(f"--user={self.user}:{self.password}")
        if self.tls is not None:
            command.append(f"--cacert={self.tls.ca}")
            if self.client_cert_required:
                command += [f"--cert={self.tls.client_cert}", f"--key={self.tls.client_key}"]
        try:
            done = subprocess.run(
                [*command, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, "ETCDCTL_API": "3"},
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise EtcdctlError(f"etcdctl {' '.join(args)}: no answer in {timeout:g}s") from exc
        if done.returncode != 0:
            raise EtcdctlError(f"etcdctl {' '.join(args)}: {done.stderr.strip()[-1000:]}")
        return done.stdout

    def healthy(self, members: Sequence[EtcdMember] | None = None) -> bool:
        """``etcdctl endpoint health`` passes for every one of ``members`` (default: all)."""
        try:
            self.etcdctl("endpoint", "health", members=members, timeout=3)
        except EtcdctlError:
            return False
        return True

    def _status(self, member: EtcdMember) -> dict[str, Any] | None:
        try:
            out = self.etcdctl("endpoint", "status", "-w", "json", members=[member], timeout=3)
        except EtcdctlError:
            return None
        status: dict[str, Any] = json.loads(out)[0]["Status"]
        return status

    def _leader_id(self, members: Sequence[EtcdMember]) -> int | None:
        """The leader id the answering ``members`` agree on (None: no answer or no leader)."""
        seen = {s.get("leader", 0) for m in members if (s := self._status(m)) is not None}
        return seen.pop() if len(seen) == 1 and 0 not in seen else None

    def _by_id(self, member_id: int) -> EtcdMember:
        return next(m for m in self.members if m.member_id == member_id)

    def leader(self) -> EtcdMember:
        """The member the running members say leads (``ClusterTimeout`` when they do not
        agree on one within a few seconds)."""
        return self.wait_leader(timeout=5.0)

    def wait_leader(
        self, timeout: float = 15.0, *, other_than: EtcdMember | None = None
    ) -> EtcdMember:
        """Wait until the answering (running, not paused) members agree on a leader
        (other than ``other_than``); that member."""
        up = [m for m in self.members if m.answering]
        found: list[EtcdMember] = []

        def agreed() -> bool:
            leader_id = self._leader_id(up)
            if leader_id is None or (other_than is not None and leader_id == other_than.member_id):
                return False
            found[:] = [self._by_id(leader_id)]
            return True

        wait_until("etcd: a leader", agreed, timeout, up)
        return found[0]

    def move_leader(self, member: EtcdMember, timeout: float = 15.0) -> None:
        """``etcdctl move-leader``: make ``member`` the leader, and wait until it is."""
        up = [m for m in self.members if m.answering]
        if self.leader() is not member:
            self.etcdctl("move-leader", member.hex_id, members=up)
        wait_until(
            f"etcd: {member.name} leads", lambda: self._leader_id(up) == member.member_id, timeout
        )

    def kill(self, member: EtcdMember) -> None:
        """SIGKILL ``member`` (its data folder is kept for ``restart``)."""
        member.kill()

    def pause(self, member: EtcdMember) -> None:
        """SIGSTOP ``member``."""
        member.pause()

    def resume(self, member: EtcdMember) -> None:
        """SIGCONT ``member``."""
        member.resume()

    def restart(self, member: EtcdMember, timeout: float = READY_TIMEOUT) -> None:
        """Stop (or after a kill, just start) ``member`` again, and wait until it is healthy."""
        member.restart()
        wait_until(
            f"etcd: {member.name} healthy again",
            lambda: self.healthy([member]),
            timeout,
            [member],
        )


def _etcd_member(
    binary: str,
    name: str,
    folder: Path,
    processes: Processes,
    tls: TLSFiles | None,
    client_cert_required: bool,
    token: str,
) -> EtcdMember:
    scheme = "https" if tls is not None else "http"
    client, peer = free_ports(2)
    member = EtcdMember(
        name=name,
        port=client,
        args=[],
        log=folder / f"{name}.log",
        processes=processes,
        url=f"{scheme}://{HOST}:{client}",
        peer_url=f"http://{HOST}:{peer}",
    )
    member.args = [
        binary,
        "--name",
        name,
        "--data-dir",
        str(folder / name),
        "--listen-client-urls",
        member.url,
        "--advertise-client-urls",
        member.url,
        "--listen-peer-urls",
        member.peer_url,
        "--initial-advertise-peer-urls",
        member.peer_url,
        "--initial-cluster-token",
        token,
        "--heartbeat-interval",
        "100",
        "--election-timeout",
        "1000",
    ]
    if tls is not None:
        member.args += ["--cert-file", str(tls.server_cert), "--key-file", str(tls.server_key)]
        if client_cert_required:
            member.args += ["--client-cert-auth", "--trusted-ca-file", str(tls.ca)]
    return member


@contextlib.contextmanager
def etcd_cluster_running(
    *,
    auth: bool = False,
    tls: bool = False,
    client_cert_required: bool = True,
    auth_token_ttl: int = 300,
    size: int = 3,
) -> Iterator[EtcdCluster]:
    """Start ``size`` etcd members; with ``auth``, user ``root`` (password ``pw``) and
    auth enabled (simple tokens living ``auth_token_ttl`` seconds); with ``tls``, https
    client URLs (peers stay plain http on the loopback)."""
    binary = require_binary("etcd", "Debian package etcd-server")
    _install_etcdctl()
    etcdctl = require_binary("etcdctl", "Debian package etcd-client")
    with _cluster_scope("etcd-cluster") as (scratch, processes):
        with _starting("etcd-cluster"):
            started = time.monotonic()
            files = make_tls_files(scratch / "tls") if tls else None
            token = f"gochat-{uuid.uuid4().hex[:8]}"
            members = [
                _etcd_member(
                    binary, f"e{i}", scratch, processes, files, client_cert_required, token
                )
                for i in range(1, size + 1)
            ]
            initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
            for member in members:
                member.args += [
                    "--initial-cluster",
                    initial,
                    "--initial-cluster-state",
                    "new",
                    "--auth-token-ttl",
                    str(auth_token_ttl),
                ]
                member.start()
            cluster = EtcdCluster(
                members, processes, etcdctl, tls=files, client_cert_required=client_cert_required
            )
            wait_until("etcd: every member healthy", cluster.healthy, READY_TIMEOUT, members)
            listed = json.loads(cluster.etcdctl("member", "list", "-w", "json"))["members"]
            ids = {m["name"]: int(m["ID"]) for m in listed}
            for member in members:
                member.member_id = ids[member.name]
            if auth:
                cluster.etcdctl("user", "add", "root:pw")
                cluster.etcdctl("auth", "enable")
                cluster.user, cluster.password = "root", "pw"
                wait_until("etcd: healthy with auth", cluster.healthy, READY_TIMEOUT, members)
            cluster.start_seconds = time.monotonic() - started
        yield cluster


# ---- Redis Sentinel -------------------------------------------------------


@dataclass
class RedisSentinel:
    """A master, a replica and three sentinels (quorum 2, down after 1 s, failover
    timeout 3 s) watching it as ``master_name``.

    ``servers`` are the two data nodes (which one is master changes on failover).
    """

    servers: list[Node]
    sentinels: list[Node]
    processes: Processes = field(repr=False)
    master_name: str = "gmaster"
    start_seconds: float = 0.0
    _killed: str = field(default="", repr=False)

    @property
    def sentinel_addresses(self) -> list[str]:
        """``["127.0.0.1:S1", "127.0.0.1:S2", "127.0.0.1:S3"]``."""
        return [s.address for s in self.sentinels]

    def url(self, db: int = 0) -> str:
        """``redis+sentinel://127.0.0.1:S1,...,127.0.0.1:S3/gmaster/0``."""
        return f"redis+sentinel://{','.join(self.sentinel_addresses)}/{self.master_name}/{db}"

    @property
    def pids(self) -> list[int]:
        """Every pid started for this setup."""
        return self.processes.pids

    def logs(self) -> str:
        """The end of every node's log (for a failing assertion's message)."""
        return _logs([*self.servers, *self.sentinels])

    def _masters_seen(self) -> list[str]:
        seen = []
        for sentinel in self.sentinels:
            try:
                reply = redis_call(
                    sentinel.address, "SENTINEL", "get-master-addr-by-name", self.master_name
                )
            except (OSError, RuntimeError):
                continue
            if isinstance(reply, list) and len(reply) == 2:
                seen.append(f"{_text(reply[0])}:{_text(reply[1])}")
        return seen

    def master_address(self) -> str:
        """``host:port`` of the master as most answering sentinels see it."""
        seen = self._masters_seen()
        if not seen:
            raise ClusterTimeout("no sentinel answered")
        return collections.Counter(seen).most_common(1)[0][0]

    def master(self) -> Node:
        """The data node the sentinels call master."""
        address = self.master_address()
        return next(n for n in self.servers if n.address == address)

    def replica(self) -> Node:
        """The other data node."""
        master = self.master()
        return next(n for n in self.servers if n is not master)

    def kill_master(self) -> Node:
        """SIGKILL the current master; ``wait_failover`` then waits for its successor."""
        master = self.master()
        self._killed = master.address
        master.kill()
        return master

    def wait_failover(self, timeout: float = 30.0) -> str:
        """Wait until every sentinel names a new master (not the one ``kill_master``
        killed) and that server says ``role:master``; its address."""
        old = self._killed or self.master_address()

        def promoted() -> bool:
            seen = self._masters_seen()
            if len(seen) != len(self.sentinels) or len(set(seen)) != 1 or seen[0] == old:
                return False
            return _info(seen[0], "replication").get("role") == "master"

        wait_until("sentinel failover", promoted, timeout, self.sentinels)
        return self.master_address()

    def _ready(self) -> bool:
        replica = _info(self.servers[1].address, "replication")
        if replica.get("master_link_status") != "up":
            return False
        # The replica's link is up once it has loaded the snapshot, but the master
        # streams writes only from the replica's next ACK (up to a second later): a
        # master killed in between loses every write made since. Ready when a write
        # reaches the replica (WAIT on the connection that wrote it).
        try:
            with RedisConnection(self.servers[0].address) as conn:
                conn.call("SET", "gochat-test:sentinel-ready", "1")
                acked = conn.call("WAIT", "1", "100")
                conn.call("DEL", "gochat-test:sentinel-ready")
        except (OSError, RuntimeError):
            return False
        if acked != 1:
            return False
        for sentinel in self.sentinels:
            try:
                state = _pairs(redis_call(sentinel.address, "SENTINEL", "master", self.master_name))
            except (OSError, RuntimeError):
                return False
            if (
                f"{state.get('ip')}:{state.get('port')}" != self.servers[0].address
                or state.get("num-slaves") != "1"
                or state.get("num-other-sentinels") != str(len(self.sentinels) - 1)
            ):
                return False
        return True


def _redis_node(
    binary: str, name: str, folder: Path, processes: Processes, *extra: str, port: int = 0
) -> Node:
    port = port or free_ports(1)[0]
    data = folder / name
    data.mkdir()
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--dir",
        str(data),
        "--save",
        "",
        "--appendonly",
        "no",
        *extra,
    ]
    return Node(name, port, args, folder / f"{name}.log", processes)


@contextlib.contextmanager
def redis_sentinel_running(master_name: str = "gmaster") -> Iterator[RedisSentinel]:
    """Start a master, its replica and three sentinels; ready when the replica's link is
    up and every sentinel knows the master, the replica and the two other sentinels."""
    binary = require_binary("redis-server", "Debian package redis-server")
    with _cluster_scope("redis-sentinel") as (scratch, processes):
        with _starting("redis-sentinel"):
            started = time.monotonic()
            fast = ["--repl-diskless-sync-delay", "0"]  # sync the replica at once, not after 5 s
            master = _redis_node(binary, "master", scratch, processes, *fast)
            replica = _redis_node(
                binary, "replica", scratch, processes, *fast, "--replicaof", HOST, str(master.port)
            )
            # Each sentinel is told its own id, its peers and the replica up front, as it
            # would write them itself after discovery: ready without a round of hellos.
            ports = free_ports(3)
            ids = [uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in ports]
            sentinels = []
            for i, (port, myid) in enumerate(zip(ports, ids, strict=True), start=1):
                peers = "".join(
                    f"sentinel known-sentinel {master_name} {HOST} {p} {pid}\n"
                    for p, pid in zip(ports, ids, strict=True)
                    if p != port
                )
                conf = scratch / f"sentinel{i}.conf"  # sentinels rewrite their file: keep it here
                conf.write_text(
                    f"port {port}\nbind {HOST}\ndir {scratch}\nsentinel myid {myid}\n"
                    f"sentinel monitor {master_name} {HOST} {master.port} 2\n"
                    f"sentinel down-after-milliseconds {master_name} 1000\n"
                    f"sentinel failover-timeout {master_name} 3000\n"
                    f"sentinel parallel-syncs {master_name} 1\n"
                    f"sentinel known-replica {master_name} {HOST} {replica.port}\n{peers}"
                )
                args = [binary, str(conf), "--sentinel"]
                sentinels.append(
                    Node(f"sentinel{i}", port, args, scratch / f"sentinel{i}.log", processes)
                )
            setup = RedisSentinel([master, replica], sentinels, processes, master_name)
            for node in [master, replica, *sentinels]:
                node.start()
            wait_until(
                "sentinel: replica linked, sentinels agree",
                setup._ready,
                READY_TIMEOUT,
                [master, replica, *sentinels],
            )
            setup.start_seconds = time.monotonic() - started
        yield setup


# ---- Redis Cluster --------------------------------------------------------


@dataclass
class RedisCluster:
    """Three cluster-enabled masters holding all 16384 slots (no replicas)."""

    nodes: list[Node]
    processes: Processes = field(repr=False)
    start_seconds: float = 0.0

    @property
    def addresses(self) -> list[str]:
        """``["127.0.0.1:N1", "127.0.0.1:N2", "127.0.0.1:N3"]``."""
        return [n.address for n in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:N1,127.0.0.1:N2,127.0.0.1:N3``."""
        return "redis+cluster://" + ",".join(self.addresses)

    @property
    def pids(self) -> list[int]:
        """Every pid started for this cluster."""
        return self.processes.pids

    def state_ok(self) -> bool:
        """``CLUSTER INFO`` says ``cluster_state:ok`` on every node."""
        for node in self.nodes:
            try:
                info = _text(redis_call(node.address, "CLUSTER", "INFO"))
            except (OSError, RuntimeError):
                return False
            if "cluster_state:ok" not in info:
                return False
        return True


@contextlib.contextmanager
def redis_cluster_running(size: int = 3) -> Iterator[RedisCluster]:
    """Start ``size`` cluster-enabled redis-servers (each its own folder) and
    ``redis-cli --cluster create`` them; ready when every node says ``cluster_state:ok``."""
    binary = require_binary("redis-server", "Debian package redis-server")
    cli = require_binary("redis-cli", "Debian package redis-tools")
    with _cluster_scope("redis-cluster") as (scratch, processes):
        with _starting("redis-cluster"):
            started = time.monotonic()
            cluster_args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            cluster_args += ["--cluster-node-timeout", "2000"]
            nodes = [
                _redis_node(binary, f"node{i}", scratch, processes, *cluster_args, port=port)
                for i, port in enumerate(free_ports(size, cluster_bus=True), start=1)
            ]
            for node in nodes:
                node.start()
            wait_until(
                "cluster: every node answers",
                lambda: all(_info(n.port, "server") for n in nodes),
                READY_TIMEOUT,
                nodes,
            )
            addresses = [n.address for n in nodes]
            _run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]
            )
            cluster = RedisCluster(nodes, processes)
            wait_until("cluster: cluster_state:ok", cluster.state_ok, READY_TIMEOUT, nodes)
            cluster.start_seconds = time.monotonic() - started
        yield cluster


# ---- Redis over TLS -------------------------------------------------------


@dataclass
class RedisTLS:
    """A redis-server listening on TLS only (``--port 0``); ``tls`` has the CA and the
    client files (a client certificate is required when ``client_cert_required``)."""

    node: Node
    tls: TLSFiles
    processes: Processes = field(repr=False)
    client_cert_required: bool = True
    start_seconds: float = 0.0

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        return self.node.address

    def url(self, db: int = 0) -> str:
        """``rediss://127.0.0.1:port/0``."""
        return f"rediss://{self.address}/{db}"

    @property
    def pids(self) -> list[int]:
        """Every pid started for it."""
        return self.processes.pids

    def call(self, *args: str | bytes) -> RespValue:
        """One command over TLS (with the client certificate)."""
        return redis_call(self.address, *args, tls=self.tls.client_context())

    def _answers(self) -> bool:
        try:
            return self.call("PING") == b"PONG"
        except (OSError, RuntimeError):
            return False


@contextlib.contextmanager
def redis_tls_running(*, client_cert_required: bool = True) -> Iterator[RedisTLS]:
    """Start a redis-server with ``--tls-port`` (certificates made here) and no plain port."""
    binary = require_binary("redis-server", "Debian package redis-server")
    with _cluster_scope("redis-tls") as (scratch, processes):
        with _starting("redis-tls"):
            started = time.monotonic()
            files = make_tls_files(scratch / "tls")
            node = _redis_node(binary, "redis-tls", scratch, processes)
            port = node.port
            node.args[node.args.index("--port") + 1] = "0"
            node.args += [
                "--tls-port",
                str(port),
                "--tls-cert-file",
                str(files.server_cert),
                "--tls-key-file",
                str(files.server_key),
                "--tls-ca-cert-file",
                str(files.ca),
                "--tls-auth-clients",
                "yes" if client_cert_required else "optional",
            ]
            server = RedisTLS(node, files, processes, client_cert_required)
            node.start()
            wait_until("redis over TLS answers", server._answers, READY_TIMEOUT, [node])
            server.start_seconds = time.monotonic() - started
        yield server


# ---- MariaDB over TLS -----------------------------------------------------


@dataclass
class MariaDBTLS:
    """A private mariadbd with ``--ssl-ca/--ssl-cert/--ssl-key``; the user ``user``
    (password ``password``) must connect over TLS (``REQUIRE SSL``); root has no password."""

    server: MariaDBServer
    tls: TLSFiles
    processes: Processes = field(repr=False)
    user: str = "gochat_tls"
    password: str = "gochat-tls-pw"
    start_seconds: float = 0.0

    @property
    def port(self) -> int:
        """Its TCP port on 127.0.0.1."""
        return self.server.port

    @property
    def pids(self) -> list[int]:
        """Every pid started for it."""
        return self.processes.pids

    def url(self, database: str) -> str:
        """``mysql+aiomysql://gochat_tls:...@127.0.0.1:port/<database>?ssl_ca=<ca.pem>``."""
        return (
            f"mysql+aiomysql://{self.user}:{self.password}@{HOST}:{self.port}/{database}"
            f"?ssl_ca={self.tls.ca}"
        )

    def create_database(self) -> str:
        """A new empty database (granted to ``user``); its name."""
        name = f"gochat_t_{uuid.uuid4().hex[:12]}"
        self.server.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        self.server.sql(f"GRANT ALL ON `{name}`.* TO '{self.user}'@'{HOST}'")
        return name

    def connect_tls(self, database: str | None = None) -> pymysql.connections.Connection[Any]:
        """A pymysql connection as ``user`` over TLS, verifying the server certificate."""
        return pymysql.connect(
            host=HOST,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            ssl_ca=str(self.tls.ca),  # not ssl={...}: with ssl_verify_* set, pymysql drops it
            ssl_verify_cert=True,
            ssl_verify_identity=True,
            autocommit=True,
            connect_timeout=5,
        )

    def cipher(self) -> str:
        """``Ssl_cipher`` of a fresh TLS connection (empty: not TLS)."""
        conn = self.connect_tls()
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                row = cur.fetchone()
        finally:
            conn.close()
        return str(row[1]) if row else ""


@contextlib.contextmanager
def mariadb_tls_running() -> Iterator[MariaDBTLS]:
    """``mariadb-install-db`` into a temporary folder, then ``mariadbd --no-defaults``
    with the TLS files (as tests/gochat_actors/db/_mariadb_pair.py starts its pair);
    ready when a TLS connection as ``gochat_tls`` works."""
    binaries = find_binaries()
    if binaries is None:
        _missing("mariadbd / mariadb-install-db not installed (Debian package mariadb-server)")
        raise AssertionError("unreachable: _missing skips or fails")
    server_binary, install_binary = binaries
    with _cluster_scope("mariadb-tls") as (scratch, processes):
        with _starting("mariadb-tls"):
            started = time.monotonic()
            user = _run_as()
            files = make_tls_files(scratch / "tls")
            (scratch / "db").mkdir()
            _chown_tree(scratch, user)  # mariadbd runs as mysql under root: it reads the key
            datadir = f"--datadir={scratch / 'db'}"
            auth = "--auth-root-authentication-method=normal"
            _run(
                [
                    install_binary,
                    "--no-defaults",
                    f"--user={user}",
                    datadir,
                    auth,
                    *_SMALL,
                    "--skip-test-db",
                ]
            )
            tls_args = [
                f"--ssl-ca={files.ca}",
                f"--ssl-cert={files.server_cert}",
                f"--ssl-key={files.server_key}",
            ]
            server = _spawn(server_binary, scratch, "db", user, 1, tls_args)
            processes.adopt(server.process)
            try:
                _wait_ready(server)
            except RuntimeError as exc:
                raise ClusterTimeout(str(exc)) from exc
            db = MariaDBTLS(server, files, processes)
            server.sql(
                f"CREATE USER '{db.user}'@'{HOST}' IDENTIFIED BY '{db.password}' REQUIRE SSL"
            )
            if not db.cipher():
                raise ClusterTimeout("a TLS connection to the private MariaDB is not encrypted")
            db.start_seconds = time.monotonic() - started
        yield db
