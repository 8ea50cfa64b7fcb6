"""A send's own ``timeout=`` is an argument like any other: checked before anything is
queued. One caller's NaN deadline reached the reaper shared by every send, which died
on it (``trio.move_on_at(nan)``: ``ValueError``), and took the producer actor down with
it: every other send in flight got ``MQUnavailable``. A negative or zero timeout sent
the message and then told the caller it timed out."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from gochat_actors import MQTimeout
from gochat_actors.mq import MemoryBroker, MQSettings, Producer, TopicPartition
from supervisors import open_supervisor

BAD = [math.nan, -1.0, 0.0, -math.inf]


@pytest.mark.parametrize("timeout", BAD, ids=str)
async def test_a_bad_timeout_is_refused_and_nothing_is_sent(
    timeout: float, autojump_clock: trio.testing.MockClock
) -> None:
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker)
    async with open_supervisor([producer.spec()]):
        await producer.create_topic("t")
        with pytest.raises(ValueError, match="timeout"):
            await producer.send("t", b"x", timeout=timeout)
        with pytest.raises(ValueError, match="timeout"):
            await producer.send_many("t", [b"a", b"b"], timeout=timeout)
        with pytest.raises(ValueError, match="timeout"):
            await producer.end_offsets([TopicPartition("t", 0)], timeout=timeout)
        with pytest.raises(TypeError, match="timeout"):
            await producer.send("t", b"x", timeout="1")  # type: ignore[arg-type]
        assert await producer.end_offsets([TopicPartition("t", 0)]) == {TopicPartition("t", 0): 0}


async def test_one_callers_nan_timeout_does_not_fail_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = MemoryBroker()
    producer = Producer(MQSettings(), broker=broker)
    async with open_supervisor([producer.spec()]):
        broker.pause()  # sends wait for the broker: only their timeouts end them
        errors: list[BaseException] = []

        async def nan_send() -> None:
            try:
                await producer.send("t", b"n", timeout=math.nan)
            except Exception as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(nan_send)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(MQTimeout):  # not MQUnavailable: the producer still runs
                await producer.send("t", b"x", timeout=1.0)
        assert [type(e) for e in errors] == [ValueError]
        broker.resume()
