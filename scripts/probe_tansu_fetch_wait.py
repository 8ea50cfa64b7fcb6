"""Does the broker answer a waiting fetch when a record is produced? (a diagnostic)

One consumer, caught up on a fresh 1-partition topic, polls; after ``idle`` seconds a
record is produced (acks=all) and the time until the consumer gets it is printed. A
broker that wakes a waiting fetch on produce answers within milliseconds; one that does
not answers when the fetch's ``fetch_max_wait_ms`` (aiokafka: 500 ms) runs out.

Run: ``.venv/bin/python scripts/probe_tansu_fetch_wait.py`` (Kafka at 127.0.0.1:9092).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

BROKERS = "127.0.0.1:9092"


async def main() -> None:
    topic = f"gochat-probe-wait-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKERS)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=BROKERS, acks="all")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BROKERS, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(topic, b"warm-up")
        await consumer.getmany(timeout_ms=2000)
        for idle in (0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.3) * 3:
            await asyncio.sleep(idle)
            sent = time.perf_counter()
            await producer.send_and_wait(topic, b"x")
            acked = time.perf_counter()
            while not await consumer.getmany(timeout_ms=2000):
                pass
            got = time.perf_counter()
            print(
                f"idle {idle * 1000:5.0f} ms before the send: acked after "
                f"{(acked - sent) * 1000:5.1f} ms, received after {(got - sent) * 1000:6.1f} ms"
            )
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.delete_topics([topic])
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
