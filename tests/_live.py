"""A running standard service (``open_service``, embedded defaults, HTTP on a free
port) that has done a little of everything, for the tests that look at what a real
service exposes (``/metrics``, ``/debug/tree``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
import sqlalchemy as sa

from gochat_actors import CacheMiss, load_settings
from gochat_actors.service import Service, open_service


@asynccontextmanager
async def running_service(**sections: Any) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """The service and an HTTP client on its endpoints; ``sections`` override settings.

    Every component is used once, so the labelled families have a series each.
    """
    overrides: dict[str, Any] = {"http": {"port": 0}, "log": {"level": "error"}}
    overrides.update(sections)
    async with open_service(load_settings(**overrides)) as service:
        url = await service.http.wait_url(timeout=30.0)
        await service.cache.set("user:1", b"ann")
        await service.cache.get("user:1")
        with suppress(CacheMiss):
            await service.cache.get("user:2")
        async with service.db.reader() as session:
            await session.scalar(sa.text("SELECT 1"))
        async with service.locks.hold("room:7"):
            pass
        service.ids.next_id()
        await service.producer.send("chat.messages", b"hi", key=b"room-7")
        async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
            yield service, client
