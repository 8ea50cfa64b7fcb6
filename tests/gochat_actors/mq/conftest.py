"""Fixtures of the mq tests: a running bridge, Kafka settings, fast group options."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from gochat_actors import Bridge
from gochat_actors.mq import ConsumerOptions, MQSettings

FAST = ConsumerOptions(
    max_records=200,
    poll_timeout=0.2,
    session_timeout=2.0,
    heartbeat_interval=0.2,
    rebalance_timeout=1.0,
    request_timeout=5.0,
)
"""Group options for Tansu: a join takes about a second instead of three to five."""


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
