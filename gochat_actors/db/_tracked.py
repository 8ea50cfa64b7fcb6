"""The sync ``Session`` both backends hand out: it notes what the manager must know.

Imported by the backends only (it imports SQLAlchemy).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

__all__ = ["TrackedSession"]


class TrackedSession(Session):
    """A ``Session`` that notes when it flushed (ORM changes written: a write, even when
    a SELECT's autoflush did it) and the server-side id of its connection (MySQL's
    ``CONNECTION_ID()``, to ``KILL QUERY`` a statement abandoned in flight).

    Example::

        session = TrackedSession(engine, expire_on_commit=False)
        ...
        if session.flushed:
            ...  # it wrote
    """

    flushed: bool = False
    """True once a flush wrote something (never reset: one session, one block)."""

    connection_id: int | None = None
    """The server's id of the connection of the current transaction, when the driver
    tells it (aiomysql); None otherwise (SQLite)."""


def _after_flush(session: TrackedSession, flush_context: Any) -> None:
    session.flushed = True


def _after_begin(session: TrackedSession, transaction: Any, connection: Any) -> None:
    thread_id = getattr(connection.connection.driver_connection, "thread_id", None)
    session.connection_id = thread_id() if callable(thread_id) else None


def _after_transaction_end(session: TrackedSession, transaction: Any) -> None:
    if transaction.parent is None:  # the connection goes back: the id is no longer ours
        session.connection_id = None


event.listen(TrackedSession, "after_flush", _after_flush)
event.listen(TrackedSession, "after_transaction_end", _after_transaction_end)
event.listen(TrackedSession, "after_begin", _after_begin)
