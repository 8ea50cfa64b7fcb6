"""Fixtures of the db tests: a private MariaDB primary + replica, and databases on it.

``mariadb_pair`` starts once per session (skipped when MariaDB is not installed, a
failure under CI, and a failure whenever it is installed but cannot start).
``pair_db`` gives each test a fresh database (replicated), heals the pair afterwards
(replica resumed, replication threads running) and drops the database. ``memdb`` is a
:class:`MemoryDB` closed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gochat_actors.db import DBSettings, MemoryDB
from tests._servers import in_ci
from tests.gochat_actors.db._mariadb_pair import MariaDBPair, find_binaries, start_pair


@pytest.fixture
def memdb() -> Iterator[MemoryDB]:
    """An in-memory primary and replicas, closed after the test (its SQLite databases)."""
    with MemoryDB() as db:
        yield db


@pytest.fixture(scope="session")
def mariadb_pair() -> Iterator[MariaDBPair]:
    """A private primary (``--log-bin --server-id=1``) and replica (``--server-id=2``)."""
    binaries = find_binaries()
    if binaries is None:
        reason = "mariadbd / mariadb-install-db not installed (Debian package mariadb-server)"
        if in_ci():
            pytest.fail(f"{reason} [CI is set: a missing server is a failure]", pytrace=False)
        pytest.skip(reason)
    try:
        pair = start_pair(*binaries)
    except (RuntimeError, OSError) as exc:
        pytest.fail(f"could not start the private MariaDB primary + replica: {exc}", pytrace=False)
    try:
        yield pair
    finally:
        pair.stop()


@dataclass
class PairDB:
    """One fresh database on the pair: its URLs, and settings naming both servers."""

    pair: MariaDBPair
    name: str

    @property
    def primary_url(self) -> str:
        return self.pair.primary.url(self.name)

    @property
    def replica_url(self) -> str:
        return self.pair.replica.url(self.name)

    def settings(self, **overrides: Any) -> DBSettings:
        """``DBSettings`` with this database on the primary and the replica."""
        fields: dict[str, Any] = {
            "primary": self.primary_url,
            "replicas": [self.replica_url],
            "probe_interval": 1.0,
            "max_lag": 5.0,
            "sticky_seconds": 2.0,
            **overrides,
        }
        return DBSettings.model_validate(fields)

    def rows(self, sql: str, *, on: str = "primary") -> list[dict[str, Any]]:
        """``sql`` on a fresh connection to ``on`` (``"primary"`` or ``"replica"``)."""
        server = self.pair.primary if on == "primary" else self.pair.replica
        return server.sql(sql, database=self.name)


@pytest.fixture
def pair_db(mariadb_pair: MariaDBPair) -> Iterator[PairDB]:
    """A fresh database on the private pair; the pair is healed and the database dropped after."""
    name = mariadb_pair.create_database()
    try:
        yield PairDB(mariadb_pair, name)
    finally:
        mariadb_pair.heal()
        mariadb_pair.drop_database(name)
