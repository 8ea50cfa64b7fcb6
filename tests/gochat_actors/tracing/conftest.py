"""A bridge and Kafka settings for the interop tests (the in-memory span fixtures,
``provider`` and ``spans``, are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from gochat_actors import Bridge
from gochat_actors.mq import MQSettings


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    """A running asyncio bridge (trio-asyncio loop) for the test."""
    running = Bridge()
    async with trio.open_nursery() as nursery:
        await nursery.start(running.run)
        yield running
        nursery.cancel_scope.cancel()


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> MQSettings:
    """``[mq]`` settings pointing at the shared test broker."""
    return MQSettings(brokers=kafka_bootstrap, client_id="gochat-tests")
