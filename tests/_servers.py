"""The four real servers the tests use: addresses, probes, and namespace cleanup.

Everything here is synchronous and blocking on purpose: it runs in pytest's
fixture machinery, outside ``trio.run``, so a test's ``autojump_clock`` can never
fire a probe's timeout early. `scripts/services up` starts the servers.

Each probe is a quick TCP handshake (no client library): MariaDB's greeting
packet, Redis ``PING``, etcd ``/health``, Kafka ``ApiVersions``.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import socket
import struct
import urllib.request
import uuid
from collections.abc import Callable
from typing import Final, Literal, Protocol, TypeAlias

import pymysql
import pytest

from gochat_actors.idgen import prefix_end

Server = Literal["mariadb", "redis", "etcd", "kafka"]
SERVERS: Final[tuple[Server, ...]] = ("mariadb", "redis", "etcd", "kafka")

HOST: Final = "127.0.0.1"
MARIADB_PORT: Final = 3306
REDIS_PORT: Final = 6379
ETCD_PORT: Final = 2379
KAFKA_PORT: Final = 9092

REDIS_URL: Final = f"redis://{HOST}:{REDIS_PORT}/0"
ETCD_URL: Final = f"http://{HOST}:{ETCD_PORT}"
KAFKA_BOOTSTRAP: Final = f"{HOST}:{KAFKA_PORT}"
MARIADB_USER: Final = "root"

PROBE_TIMEOUT: Final = 2.0
ADDRESSES: Final[dict[Server, str]] = {
    "mariadb": f"{HOST}:{MARIADB_PORT}",
    "redis": f"{HOST}:{REDIS_PORT}",
    "etcd": f"{HOST}:{ETCD_PORT}",
    "kafka": f"{HOST}:{KAFKA_PORT}",
}


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set (a missing server then fails)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unique_name(stem: str, sep: str = "-") -> str:
    """Return ``gochat-test<sep><stem><sep><12 hex digits>``, unique per call.

    >>> unique_name("orders").startswith("gochat-test-orders-")
    True
    """
    return f"gochat-test{sep}{stem}{sep}{uuid.uuid4().hex[:12]}"


# ---- probes -------------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def _probe_mariadb() -> None:
    with socket.create_connection((HOST, MARIADB_PORT), timeout=PROBE_TIMEOUT) as sock:
        length = int.from_bytes(_recv_exact(sock, 4)[:3], "little")
        payload = _recv_exact(sock, length)
    if payload[0] != 10:  # 0xff = error packet (e.g. host blocked); 10 = handshake v10
        raise ConnectionError(f"unexpected MariaDB greeting {payload[:40]!r}")


def _probe_redis() -> None:
    with socket.create_connection((HOST, REDIS_PORT), timeout=PROBE_TIMEOUT) as sock:
        sock.sendall(b"PING\r\n")
        reply = _recv_exact(sock, 7)
    if reply != b"+PONG\r\n":
        raise ConnectionError(f"unexpected Redis reply {reply!r}")


def _probe_etcd() -> None:
    with urllib.request.urlopen(f"{ETCD_URL}/health", timeout=PROBE_TIMEOUT) as resp:
        body = json.loads(resp.read())
    if body.get("health") != "true":
        raise ConnectionError(f"etcd /health says {body!r}")


def _probe_kafka() -> None:
    _kafka_request(api_key=18, api_version=0, body=b"")  # ApiVersions: error_code must be 0


_PROBES: Final[dict[Server, Callable[[], None]]] = {
    "mariadb": _probe_mariadb,
    "redis": _probe_redis,
    "etcd": _probe_etcd,
    "kafka": _probe_kafka,
}


@functools.cache
def unavailable_reason(server: Server) -> str | None:
    """Probe ``server`` once per session; None when it answers, else why not."""
    try:
        _PROBES[server]()
    except (OSError, ValueError) as exc:
        return (
            f"{server} is not reachable at {ADDRESSES[server]} "
            f"({type(exc).__name__}: {exc}); start it with `scripts/services up`"
        )
    return None


def require_server(server: Server) -> None:
    """Skip the current test unless ``server`` answered its probe; under CI, fail it."""
    reason = unavailable_reason(server)
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"{reason} [CI is set: a missing server is a failure]", pytrace=False)
    pytest.skip(reason)


# ---- Redis: a minimal RESP client for cleanup ---------------------------

RespValue: TypeAlias = bytes | int | list["RespValue"] | None


class _Resp:
    """Blocking RESP2 connection: enough for SCAN and UNLINK."""

    def __init__(self) -> None:
        self._sock = socket.create_connection((HOST, REDIS_PORT), timeout=10)
        self._file = self._sock.makefile("rb")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def call(self, *args: str | bytes) -> RespValue:
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            raw = arg.encode() if isinstance(arg, str) else arg
            parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
        self._sock.sendall(b"".join(parts))
        return self._read()

    def _read(self) -> RespValue:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(f"Redis error: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._file.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError(f"bad RESP line {line!r}")


def redis_delete_prefix(prefix: str) -> int:
    """Delete every key starting with ``prefix`` (no glob characters); return the count."""
    if any(c in prefix for c in "*?[]\\"):
        raise ValueError(f"prefix must not contain glob characters: {prefix!r}")
    conn = _Resp()
    deleted = 0
    try:
        cursor: bytes = b"0"
        while True:
            reply = conn.call("SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000")
            if not isinstance(reply, list) or len(reply) != 2:
                raise ConnectionError(f"unexpected SCAN reply {reply!r}")
            next_cursor, keys = reply
            if not isinstance(next_cursor, bytes) or not isinstance(keys, list):
                raise ConnectionError(f"unexpected SCAN reply {reply!r}")
            names = [k for k in keys if isinstance(k, bytes)]
            if names:
                count = conn.call("UNLINK", *names)
                deleted += count if isinstance(count, int) else 0
            cursor = next_cursor
            if cursor == b"0":
                return deleted
    finally:
        conn.close()


# ---- etcd ----------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def etcd_post(path: str, payload: dict[str, object]) -> dict[str, object]:
    """POST ``payload`` as JSON to the etcd v3 gateway; return the JSON reply."""
    req = urllib.request.Request(
        f"{ETCD_URL}{path}",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        body: dict[str, object] = json.loads(resp.read())
    return body


def etcd_delete_prefix(prefix: str) -> int:
    """Delete every etcd key starting with ``prefix``; return the count."""
    raw = prefix.encode()
    reply = etcd_post("/v3/kv/deleterange", {"key": _b64(raw), "range_end": _b64(prefix_end(raw))})
    return int(str(reply.get("deleted", "0")))


# ---- Kafka: ApiVersions (probe) and DeleteTopics (cleanup) ---------------


def _kafka_string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def _kafka_request(api_key: int, api_version: int, body: bytes) -> bytes:
    """Send one request (header v1) and return the response body after the correlation id.

    For ApiVersions the first two bytes of the body (error_code) must be 0.
    """
    correlation_id = 0x6763  # "gc"
    header = struct.pack(">hhi", api_key, api_version, correlation_id)
    message = header + _kafka_string("gochat-tests") + body
    with socket.create_connection((HOST, KAFKA_PORT), timeout=PROBE_TIMEOUT * 5) as sock:
        sock.sendall(struct.pack(">i", len(message)) + message)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        response = _recv_exact(sock, size)
    (got_id,) = struct.unpack(">i", response[:4])
    if got_id != correlation_id:
        raise ConnectionError(f"Kafka correlation id {got_id} != {correlation_id}")
    if api_key == 18:
        (error_code,) = struct.unpack(">h", response[4:6])
        if error_code != 0:
            raise ConnectionError(f"Kafka ApiVersions error_code {error_code}")
    return response[4:]


def kafka_delete_topics(topics: list[str]) -> None:
    """Delete ``topics`` (DeleteTopics v0); a topic that was never created is fine."""
    if not topics:
        return
    body = struct.pack(">i", len(topics)) + b"".join(_kafka_string(t) for t in topics)
    body += struct.pack(">i", 10_000)  # timeout_ms
    reply = _kafka_request(api_key=20, api_version=0, body=body)
    (count,) = struct.unpack(">i", reply[:4])
    pos, failures = 4, []
    for _ in range(count):
        (n,) = struct.unpack(">h", reply[pos : pos + 2])
        name = reply[pos + 2 : pos + 2 + n].decode()
        (code,) = struct.unpack(">h", reply[pos + 2 + n : pos + 4 + n])
        pos += 4 + n
        if code not in (0, 3):  # 3 = UNKNOWN_TOPIC_OR_PARTITION: never created
            failures.append(f"{name}: error_code {code}")
    if failures:
        raise RuntimeError("Kafka DeleteTopics failed: " + ", ".join(failures))


# ---- MariaDB -------------------------------------------------------------


def _mariadb_admin(sql: str) -> None:
    conn = pymysql.connect(
        host=HOST, port=MARIADB_PORT, user=MARIADB_USER, password="", connect_timeout=10
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def mariadb_create_database(name: str) -> None:
    """Create the database ``name`` (letters, digits and ``_`` only)."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"bad database name {name!r}")
    _mariadb_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")


def mariadb_drop_database(name: str) -> None:
    """Drop the database ``name`` if it exists."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"bad database name {name!r}")
    _mariadb_admin(f"DROP DATABASE IF EXISTS `{name}`")


def mariadb_url(database: str, driver: str = "aiomysql") -> str:
    """SQLAlchemy URL for ``database`` on the test server, e.g. ``mysql+aiomysql://...``."""
    return f"mysql+{driver}://{MARIADB_USER}@{HOST}:{MARIADB_PORT}/{database}"


class TopicFactory(Protocol):
    """What the ``kafka_topic_factory`` fixture returns: ``factory("orders") -> name``."""

    def __call__(self, stem: str = "topic") -> str:
        """Return a new unique topic name containing ``stem`` (created by the caller)."""
        ...
