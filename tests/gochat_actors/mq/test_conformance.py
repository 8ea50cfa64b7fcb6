"""The mq conformance suite, unchanged, on Tansu (aiokafka) and on the in-memory broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio

from gochat_actors import Bridge, MQUnavailable
from gochat_actors.mq import (
    Connection,
    ConsumerOptions,
    GroupConsumer,
    MemoryBroker,
    MQBackend,
    MQSettings,
    OutgoingRecord,
    RecordMetadata,
    TopicPartition,
)
from gochat_actors.mq._backends import BACKENDS
from gochat_actors.testing import MQ_CHECKS, check_mq_backend
from tests import _servers

CHECKED = {"memory", "kafka"}
"""The backends this file runs the suite on: a newly registered one fails the test below."""

Check = Callable[[MQBackend], Awaitable[None]]


def _name(check: Check) -> str:
    return getattr(check, "__name__", "check")


class _RecordingBackend:
    """Delegates to a backend and remembers the topics it created (to delete them)."""

    def __init__(self, backend: MQBackend, created: list[str]) -> None:
        self._backend = backend
        self._created = created

    async def create_topic(self, topic: str, partitions: int = 1) -> None:
        self._created.append(topic)
        await self._backend.create_topic(topic, partitions)

    async def ping(self) -> None:
        await self._backend.ping()

    async def send_batch(
        self, records: Sequence[OutgoingRecord]
    ) -> list[RecordMetadata | Exception]:
        return await self._backend.send_batch(records)

    async def partitions(self, topic: str) -> int:
        return await self._backend.partitions(topic)

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return await self._backend.end_offsets(partitions)

    async def committed(
        self, group_id: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        return await self._backend.committed(group_id, partitions)

    async def open_consumer(
        self, group_id: str, topics: Sequence[str], options: ConsumerOptions
    ) -> GroupConsumer:
        return await self._backend.open_consumer(group_id, topics, options)

    async def aclose(self) -> None:
        await self._backend.aclose()


def _kafka(settings: MQSettings, bridge: Bridge, created: list[str]) -> Any:
    @asynccontextmanager
    async def make() -> AsyncIterator[MQBackend]:
        async with Connection(settings, bridge=bridge).connect() as backend:
            yield _RecordingBackend(backend, created)

    return make


def test_every_registered_backend_is_checked() -> None:
    assert set(BACKENDS.kinds()) == CHECKED


@pytest.mark.parametrize("check", MQ_CHECKS, ids=_name)
async def test_memory_backend(check: Check, autojump_clock: trio.testing.MockClock) -> None:
    async with Connection(MQSettings(), broker=MemoryBroker()).connect() as backend:
        await check(backend)


@pytest.mark.parametrize("check", MQ_CHECKS, ids=_name)
async def test_kafka_backend(check: Check, kafka_bootstrap: str, bridge: Bridge) -> None:
    created: list[str] = []
    settings = MQSettings(brokers=kafka_bootstrap)
    try:
        async with _kafka(settings, bridge, created)() as backend:
            await check(backend)
    finally:
        _servers.kafka_delete_topics(created)


async def test_whole_suite_on_one_memory_broker(autojump_clock: trio.testing.MockClock) -> None:
    """``check_mq_backend`` runs every check; their topics and groups do not collide."""
    broker = MemoryBroker()
    make: Callable[[], AbstractAsyncContextManager[MQBackend]] = Connection(
        MQSettings(), broker=broker
    ).connect
    await check_mq_backend(make)
    assert len(broker.topics()) >= len(MQ_CHECKS) - 1


async def test_closed_backends_are_unavailable(kafka_bootstrap: str, bridge: Bridge) -> None:
    async with Connection(MQSettings(), broker=MemoryBroker()).connect() as memory:
        pass
    with pytest.raises(MQUnavailable):
        await memory.ping()
    kafka_url = f"kafka://{kafka_bootstrap}"  # the scheme's form of the bare host list
    async with Connection(MQSettings(brokers=kafka_url), bridge=bridge).connect() as kafka:
        pass
    with pytest.raises(MQUnavailable):
        await kafka.ping()


class _AlwaysAnswers(_RecordingBackend):
    """A backend whose ping never fails, even closed: what check_ping must reject."""

    async def ping(self) -> None:
        pass


async def test_check_ping_rejects_a_ping_that_cannot_fail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from gochat_actors.testing._mq_conformance import check_ping

    async with Connection(MQSettings(), broker=MemoryBroker()).connect() as backend:
        with pytest.raises(AssertionError, match="can never fail"):
            await check_ping(_AlwaysAnswers(backend, []))
