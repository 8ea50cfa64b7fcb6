"""Settings for the demo against real servers (the e2e tests)."""

from __future__ import annotations

import itertools
from pathlib import Path

from tests._private import PrivateServer


def demo_toml(
    path: Path,
    *,
    mariadb_url: str,
    redis: PrivateServer,
    etcd: PrivateServer,
    broker: PrivateServer,
    lease_ttl: float = 5.0,
    margin: float = 1.0,
) -> Path:
    """Write a TOML settings file that points every component at a real server."""
    path.write_text(
        f"""
[service]
name = "gochat-e2e"

[log]
level = "warning"

[http]
enabled = false

[db]
primary = "{mariadb_url}"

[cache]
url = "{redis.url}"
key_prefix = "e2e:"

[lock]
default_ttl = 6.0

[mq]
brokers = "{broker.address}"
client_id = "gochat-e2e"

[idgen]
etcd = "{etcd.url}"
key_prefix = "/e2e/machine_ids/"
lease_ttl = {lease_ttl}
margin = {margin}
"""
    )
    return path


def db_rows(mariadb_url: str, query: str) -> list[tuple[int, ...]]:
    """Run ``query`` on the test's MariaDB database (from a fresh connection)."""
    import pymysql

    database = mariadb_url.rsplit("/", 1)[1]
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=database)
    try:
        with conn.cursor() as cursor:
            cursor.execute(query)
            return [tuple(int(v) for v in row) for row in cursor.fetchall()]
    finally:
        conn.close()


COMPACTIONS = "SELECT token, started_ms, ended_ms FROM demo_compactions"


def overlapping(intervals: list[tuple[int, ...]]) -> list[tuple[int, int]]:
    """Pairs of fencing tokens whose (start, end) intervals overlap, in token order."""
    ordered = sorted(intervals)
    return [
        (a[0], b[0])
        for a, b in itertools.pairwise(ordered)
        if b[1] < a[2]  # the next one started before this one ended
    ]
