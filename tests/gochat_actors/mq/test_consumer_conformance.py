"""The consumer conformance checks (``_consumer_checks.py``) for both kinds of processor,
``processor=`` and ``batch_processor=``, on the in-memory broker (virtual time) and on
Kafka (Tansu): order per partition, commits, retries and dead letters, kills."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from gochat_actors import Bridge
from gochat_actors.mq import Connection, MemoryBroker, MQSettings
from tests import _servers
from tests.gochat_actors.mq._consumer_checks import (
    MODES,
    Mode,
    Rig,
    check_dead_letter_headers,
    check_kills,
    check_order_and_commit,
    check_poison_to_dead_letter,
)
from tests.gochat_actors.mq.conftest import FAST

MEMORY_OPTIONS = FAST


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Mode:
    """``message``: ``processor=``; ``batch``: ``batch_processor=``."""
    value: Mode = request.param
    return value


@pytest.fixture
async def memory() -> AsyncIterator[Rig]:
    """The in-memory broker; its tests ask for ``autojump_clock`` themselves (pytest-trio
    takes the clock from the test's own arguments only)."""
    broker = MemoryBroker()
    async with Connection(MQSettings(), broker=broker).connect() as backend:
        yield Rig(backend, {"broker": broker}, MEMORY_OPTIONS)


@pytest.fixture
async def kafka(kafka_bootstrap: str, bridge: Bridge) -> AsyncIterator[Rig]:
    settings = MQSettings(brokers=kafka_bootstrap, client_id="gochat-tests")
    async with Connection(settings, bridge=bridge).connect() as backend:
        rig = Rig(backend, {"settings": settings, "bridge": bridge}, FAST)
        try:
            yield rig
        finally:
            _servers.kafka_delete_topics(rig.topics)


# -- the in-memory broker ---------------------------------------------------------------


async def test_order_and_commit_on_memory(
    memory: Rig, mode: Mode, autojump_clock: trio.testing.MockClock
) -> None:
    await check_order_and_commit(memory, mode)


async def test_poison_to_dead_letter_on_memory(
    memory: Rig, mode: Mode, autojump_clock: trio.testing.MockClock
) -> None:
    await check_poison_to_dead_letter(memory, mode)


async def test_dead_letter_headers_on_memory(
    memory: Rig, mode: Mode, autojump_clock: trio.testing.MockClock
) -> None:
    await check_dead_letter_headers(memory, mode)


@pytest.mark.parametrize("path", ["c", "c/workers"])
async def test_kills_on_memory(
    memory: Rig, mode: Mode, autojump_clock: trio.testing.MockClock, path: str
) -> None:
    await check_kills(memory, mode, path=path, kills=10, count=2000)


# -- Kafka (Tansu) ------------------------------------------------------------------------


async def test_order_and_commit_on_kafka(kafka: Rig, mode: Mode) -> None:
    await check_order_and_commit(kafka, mode)


async def test_poison_to_dead_letter_on_kafka(kafka: Rig, mode: Mode) -> None:
    await check_poison_to_dead_letter(kafka, mode)


async def test_dead_letter_headers_on_kafka(kafka: Rig, mode: Mode) -> None:
    await check_dead_letter_headers(kafka, mode)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", ["c", "c/workers"])
async def test_kills_on_kafka(kafka: Rig, mode: Mode, path: str) -> None:
    await check_kills(kafka, mode, path=path, kills=5, count=2000)
