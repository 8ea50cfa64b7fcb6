"""The in-memory servers a service's components may run on instead of their settings'."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..cache import MemoryStore
    from ..db import DBBackend, DBSettings, MemoryDB
    from ..idgen import EtcdBackend, IdClock
    from ..mq import MemoryBroker

__all__ = ["ServiceBackends", "embedded_db"]


@dataclass(frozen=True, slots=True)
class ServiceBackends:
    """What ``open_service`` builds its components on when given (None: from settings).

    :func:`gochat_actors.testing.open_test_service` fills every field, so that each
    component runs in memory on the trio clock and its server's fault switches are at
    hand.
    """

    db: DBBackend | None = None
    cache: MemoryStore | None = None
    etcd: EtcdBackend | None = None
    id_clock: IdClock | None = None
    broker: MemoryBroker | None = None


def embedded_db(settings: DBSettings) -> MemoryDB | None:
    """The backend of the embedded default ``sqlite+aiosqlite:///:memory:`` (no replica):
    SQLite in place on the trio thread (a :class:`~gochat_actors.db.MemoryDB` keeping no
    binlog), or None for every other URL.

    Through aiosqlite the database would live in a thread, whose progress is wall-clock
    time: under ``autojump_clock`` virtual time jumps past every start timeout while the
    thread works. A SQLite *file* keeps aiosqlite (and its WAL). The caller owns the
    result: ``open_service`` closes it once its tree has stopped.
    """
    if not settings.private_memory:  # the db's dialect says (only SQLite's :memory:)
        return None
    from ..db import MemoryDB

    return MemoryDB(replication=False)
