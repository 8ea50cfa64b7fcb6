"""A private MariaDB primary and a real replica, for the replica tests.

Made once per test session (about 2 s): ``mariadb-install-db`` into a temporary folder,
the data folder copied for the replica, then ``mariadbd --log-bin --server-id=1`` and
``mariadbd --server-id=2 --read-only=1`` on free ports, and GTID replication from the
first to the second (``CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos; START SLAVE``).
The folders belong to ``mysql`` when we run as root (mariadbd drops to that user), else
the servers run as the current user.

Never pause or stop the shared server on 3306: other tests use it. Pause these.
Everything here is blocking on purpose: it runs in fixtures, outside ``trio.run``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from tests._servers import HOST

__all__ = ["MariaDBPair", "MariaDBServer", "find_binaries", "start_pair"]

READY_TIMEOUT = 30.0
REPL_USER, REPL_PASSWORD = "gochat_repl", "gochat-repl-pw"
_SMALL = ("--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M")


def find_binaries() -> tuple[str, str] | None:
    """``(mariadbd, mariadb-install-db)`` paths, or None when MariaDB is not installed."""
    server = shutil.which("mariadbd") or (
        "/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None
    )
    install = shutil.which("mariadb-install-db")
    return (server, install) if server and install else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MariaDBServer:
    """One private server: SQL as root, and ``kill -STOP``/``-CONT``."""

    name: str
    port: int
    datadir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, database: str = "") -> str:
        """The aiomysql URL of ``database`` on this server, as root."""
        return f"mysql+aiomysql://root@{HOST}:{self.port}/{database}"

    def connect(self, database: str | None = None) -> pymysql.connections.Connection[Any]:
        """A fresh autocommit connection as root."""
        return pymysql.connect(
            host=HOST,
            port=self.port,
            user="root",
            password="",
            database=database,
            autocommit=True,
            connect_timeout=5,
            read_timeout=30,
        )

    def sql(self, statement: str, database: str | None = None) -> list[dict[str, Any]]:
        """Run ``statement`` on a fresh connection; its rows as dicts."""
        conn = self.connect(database)
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute(statement)
                return list(cur.fetchall())
        finally:
            conn.close()

    def pause(self) -> None:
        """``kill -STOP``: the server hangs; connections stay open, nothing answers."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """``kill -CONT``."""
        os.kill(self.process.pid, signal.SIGCONT)

    def tail(self, lines: int = 20) -> str:
        """The end of its error log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop it (resumed first: a stopped process ignores SIGTERM)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.resume()
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class MariaDBPair:
    """A primary and its replica; ``base`` is the temporary folder holding both."""

    primary: MariaDBServer
    replica: MariaDBServer
    base: Path
    databases: list[str] = field(default_factory=list)

    def create_database(self) -> str:
        """A new empty database on the primary, replicated; returns its name."""
        name = f"gochat_t_{uuid.uuid4().hex[:12]}"
        self.primary.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        self.databases.append(name)
        self.wait_replicated()
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name`` on the primary (the drop replicates)."""
        self.primary.sql(f"DROP DATABASE IF EXISTS `{name}`")

    def wait_replicated(self, timeout: float = 15.0) -> None:
        """Wait until the replica has applied everything the primary has written."""
        position = self.primary.sql("SELECT @@gtid_binlog_pos AS pos")[0]["pos"]
        rows = self.replica.sql(f"SELECT MASTER_GTID_WAIT('{position}', {timeout}) AS r")
        if rows[0]["r"] != 0:
            raise TimeoutError(f"the replica did not reach GTID {position} in {timeout:g}s")

    def replica_status(self) -> dict[str, Any]:
        """``SHOW SLAVE STATUS`` of the replica."""
        rows = self.replica.sql("SHOW SLAVE STATUS")
        return rows[0] if rows else {}

    def heal(self) -> None:
        """Undo what a test may have done: resume the replica, restart its threads."""
        with contextlib.suppress(ProcessLookupError):
            self.replica.resume()
        self.replica.sql("START SLAVE")
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            status = self.replica_status()
            if status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes":
                return
            time.sleep(0.05)
        raise RuntimeError(f"replication did not restart: {self.replica_status()}")

    def stop(self) -> None:
        """Stop both servers and remove their folders."""
        for server in (self.replica, self.primary):
            server.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def _run_as() -> str:
    """The user mariadbd runs as: ``mysql`` when we are root and it exists, else us."""
    me = pwd.getpwuid(os.getuid()).pw_name
    if os.getuid() == 0:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam("mysql").pw_name
    return me


def _chown_tree(path: Path, user: str) -> None:
    if os.getuid() != 0:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def _spawn(
    binary: str, base: Path, name: str, user: str, server_id: int, extra: list[str]
) -> MariaDBServer:
    datadir, port = base / name, _free_port()
    log = base / f"{name}.err"
    args = [
        binary,
        "--no-defaults",
        f"--user={user}",
        f"--datadir={datadir}",
        f"--port={port}",
        f"--bind-address={HOST}",
        f"--socket={base / name}.sock",
        f"--pid-file={base / name}.pid",
        f"--server-id={server_id}",
        f"--log-error={log}",
        "--skip-name-resolve",
        *_SMALL,
        *extra,
    ]
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return MariaDBServer(name, port, datadir, process, log)


def _wait_ready(server: MariaDBServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"mariadbd {server.name} exited with {server.process.returncode}:\n{server.tail()}"
            )
        try:
            server.sql("SELECT 1")
            return
        except pymysql.err.OperationalError:
            time.sleep(0.05)
    raise RuntimeError(
        f"mariadbd {server.name} not ready after {READY_TIMEOUT:g}s:\n{server.tail()}"
    )


def start_pair(server_binary: str, install_binary: str) -> MariaDBPair:
    """Create, start and link a primary and a replica; raise RuntimeError (with the
    server's log) when that fails."""
    user = _run_as()
    base = Path(tempfile.mkdtemp(prefix="gochat-mariadb-"))
    started: list[MariaDBServer] = []
    try:
        primary_dir = base / "primary"
        primary_dir.mkdir()
        _chown_tree(base, user)
        install = subprocess.run(
            [
                install_binary,
                "--no-defaults",
                f"--user={user}",
                f"--datadir={primary_dir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *_SMALL,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if install.returncode != 0:
            raise RuntimeError(
                f"mariadb-install-db failed:\n{install.stdout[-2000:]}{install.stderr[-2000:]}"
            )
        shutil.copytree(primary_dir, base / "replica", symlinks=True)
        _chown_tree(base, user)
        primary = _spawn(server_binary, base, "primary", user, 1, [f"--log-bin={primary_dir}/bin"])
        started.append(primary)
        replica = _spawn(server_binary, base, "replica", user, 2, ["--read-only=1"])
        started.append(replica)
        _wait_ready(primary)
        _wait_ready(replica)
        primary.sql(f"CREATE USER '{REPL_USER}'@'{HOST}' IDENTIFIED BY '{REPL_PASSWORD}'")
        primary.sql(f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'{HOST}'")
        replica.sql(
            f"CHANGE MASTER TO MASTER_HOST='{HOST}', MASTER_PORT={primary.port}, "
            f"MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', "
            "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
        )
        pair = MariaDBPair(primary, replica, base)
        pair.heal()  # START SLAVE, wait for both threads
        pair.wait_replicated()
        return pair
    except BaseException:
        for server in started:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
        raise
