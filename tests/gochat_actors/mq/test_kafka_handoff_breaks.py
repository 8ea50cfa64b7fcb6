"""Adversarial tests of the consumer's poll hand-off (branch consumeperf, issue 24) on a
real Kafka-wire broker (Tansu): the asyncio poll loop waiting on the trio side
(``_deliver_boxed`` -> ``Session.deliver``) while the group rebalances, with a slow
processor, one worker, and ``max_buffered`` smaller than a fetch."""

from __future__ import annotations

from collections import defaultdict

import pytest
import trio

from gochat_actors import Bridge
from gochat_actors.mq import Consumer, Message, MQSettings, Producer
from supervisors import open_supervisor
from tests._servers import TopicFactory
from tests.gochat_actors.mq.conftest import FAST
from tests.gochat_actors.mq.test_kafka import committed_equals_ends, send_many, wait_for


@pytest.mark.timeout(180)
async def test_a_rebalance_while_the_poll_waits_for_uptake_loses_nothing(
    bridge: Bridge,
    kafka_settings: MQSettings,
    kafka_topic_factory: TopicFactory,
    kafka_group_id: str,
) -> None:
    """Held: one worker, max_buffered=5 against fetches of up to 200, a processor that
    awaits: the poll loop spends its life parked in deliver. A second member joins (the
    first's partitions revoked while a batch waits at its dispatcher and the poll holds
    another) and leaves again: every message processed, each member's first sightings
    in partition order, the commits at the end."""
    topic = kafka_topic_factory("handoff")
    producer = Producer(kafka_settings, bridge=bridge)
    seen: dict[str, dict[int, list[int]]] = {"a": defaultdict(list), "b": defaultdict(list)}
    values: set[bytes | None] = set()

    def member(name: str) -> Consumer:
        async def process(msg: Message) -> None:
            await trio.sleep(0.002)
            seen[name][msg.partition].append(msg.offset)
            values.add(msg.value)

        return Consumer(
            topics=[topic],
            group_id=kafka_group_id,
            processor=process,
            settings=kafka_settings,
            bridge=bridge,
            options=FAST,
            commit_interval=0.2,
            concurrency=1,
            max_buffered=5,
            revoke_timeout=1.0,
        )

    a, b = member("a"), member("b")
    async with open_supervisor([producer.spec()]) as sup:
        await producer.create_topic(topic, 4)
        await send_many(producer, topic, range(1500))
        await sup.start_child(a.spec("a"))
        await wait_for(lambda: a.statistics().processed > 100)
        await sup.start_child(b.spec("b"))
        await wait_for(lambda: bool(b.statistics().assigned), 30)
        await wait_for(lambda: b.statistics().processed > 20, 30)
        await sup.terminate_child("b")
        await wait_for(lambda: len(values) == 1500, 120)
        await trio.sleep(0.5)
        await committed_equals_ends(producer, kafka_group_id, topic, 4)
    for name, parts in seen.items():
        for p, offsets in parts.items():
            first: list[int] = []
            for o in offsets:
                if o not in first:
                    first.append(o)
            # a member's sightings of a partition, first time each: increasing runs
            # (a partition taken back restarts at its committed offset)
            assert first == sorted(first), (name, p)
