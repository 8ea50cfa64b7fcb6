"""Spans collected in memory (the SDK's exporter behind a provider of the test's own);
a bridge and Kafka settings for the interop tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import trio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gochat_actors import Bridge, tracing
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


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider()


@pytest.fixture
def spans(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """Spans on for the test (its own provider, not the global one), off afterwards."""
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        yield exporter
    finally:
        tracing.disable()
        provider.shutdown()
