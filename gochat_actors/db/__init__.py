"""Primary + read replicas over SQLAlchemy async, as supervised actors; ``[db]`` settings.

Example::

    from gochat_actors.db import DBManager

    db = DBManager(settings.db, bridge=bridge, metrics=metrics)
    children.append(db.spec("db", depends_on=("bridge",)))

    async with db.transaction() as session:          # the primary; one transaction
        await session.execute(text("INSERT INTO rooms (name) VALUES (:n)"), {"n": "go"})
    async with db.reader() as session:               # a healthy replica, else the primary
        rooms = (await session.execute(text("SELECT name FROM rooms"))).all()
"""

from . import _metrics  # noqa: F401  (the database's metric families, for Metrics)
from ._manager import DBManager, DBStatistics, ReplicaInfo
from ._memory import MemoryDB, MemoryServer
from ._protocol import DBBackend, DBServer, DBSessionHandle, ReplicaStatus, ServerRole
from ._session import DBSession
from ._settings import DBSettings

__all__ = [
    "DBBackend",
    "DBManager",
    "DBServer",
    "DBSession",
    "DBSessionHandle",
    "DBSettings",
    "DBStatistics",
    "MemoryDB",
    "MemoryServer",
    "ReplicaInfo",
    "ReplicaStatus",
    "ServerRole",
]
