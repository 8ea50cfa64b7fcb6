"""MariaDB through SQLAlchemy async + aiomysql, bridged into trio by trio-asyncio."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from gochat_actors._aiocompat import load_trio_asyncio

trio_asyncio = load_trio_asyncio()  # on any Python: gochat_actors/_aiocompat.py


async def test_sqlalchemy_aiomysql_roundtrip_through_trio_asyncio(mariadb_url: str) -> None:
    """Create a table, insert in a transaction, read back, all in one bridge crossing."""

    async def work() -> tuple[list[tuple[int, str]], str, str]:
        engine = create_async_engine(mariadb_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text("CREATE TABLE messages (id INT PRIMARY KEY, body VARCHAR(100))")
                )
                await conn.execute(
                    sa.text("INSERT INTO messages VALUES (:id, :body)"),
                    [{"id": 1, "body": "hello"}, {"id": 2, "body": "héllo ✓"}],
                )
            async with engine.connect() as conn:
                rows = await conn.execute(sa.text("SELECT id, body FROM messages ORDER BY id"))
                found = [(int(r.id), str(r.body)) for r in rows]
                db = (await conn.execute(sa.text("SELECT DATABASE()"))).scalar_one()
                version = (await conn.execute(sa.text("SELECT VERSION()"))).scalar_one()
            return found, str(db), str(version)
        finally:
            await engine.dispose()

    async with trio_asyncio.open_loop():
        found, db, version = await trio_asyncio.aio_as_trio(work)()

    assert found == [(1, "hello"), (2, "héllo ✓")]
    assert mariadb_url.endswith("/" + db)  # the fixture's fresh database, not `test`
    assert "MariaDB" in version or version[0].isdigit()
