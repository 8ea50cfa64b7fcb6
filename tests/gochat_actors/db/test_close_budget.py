"""A server closed with its shutdown budget already spent (the child's cleanup started
past its stop deadline: its last call outlived the budget, or a service cancelled from
outside stops its children one after the other). ``aclose()`` computed the drain's time
as ``deadline - now`` and handed a negative number (``-inf`` in a cancelled scope) to
``trio.move_on_after``: ``ValueError``, the db child reported as crashed, the sessions
in flight never told, and the pool never closed."""

from __future__ import annotations

import trio
from sqlalchemy import text

from gochat_actors import DBError, DBUnavailable
from gochat_actors.db import DBManager, DBSettings
from gochat_actors.db._sqlalchemy import SQLAlchemyServer
from supervisors import open_supervisor


async def test_closing_with_no_budget_left_ends_the_sessions_and_the_pool() -> None:
    db = DBManager(DBSettings())  # SQLite in memory, on SQLAlchemy
    async with open_supervisor([db.spec()]):
        server = db._slot.value
        assert isinstance(server, SQLAlchemyServer)
        errors: list[DBError] = []
        entered, go_on = trio.Event(), trio.Event()

        async def user() -> None:
            try:
                async with db.transaction() as session:
                    await session.execute(text("SELECT 1"))
                    entered.set()
                    await go_on.wait()
                    await session.execute(text("SELECT 2"))
            except DBError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(user)
            await entered.wait()
            with trio.CancelScope(shield=True) as spent:
                spent.cancel()  # a cleanup scope whose deadline has already passed
                await server.aclose()
            go_on.set()
        assert [type(e) for e in errors] == [DBUnavailable]
        assert "stopped while this session was in use" in str(errors[0])
        assert server._engine is None  # the pool was closed, not dropped
