"""Replaying a dead-letter topic: a processor that sends each message back where it came
from."""

from __future__ import annotations

from ._consumer import Processor
from ._message import DLQ_HEADERS, DLQ_ORIGINAL_TOPIC, Message
from ._producer import Producer

__all__ = ["replay_processor"]


def replay_processor(producer: Producer, *, topic: str | None = None) -> Processor:
    """A processor for a consumer of a dead-letter topic: it sends each message to its
    original topic (``dlq.original_topic``; or ``topic``), with its key, value and
    headers minus the ``dlq.*`` ones (its ``trace_id`` stays: the replay joins the same
    trace). A message without ``dlq.original_topic`` and no ``topic`` raises ``ValueError``
    (it is retried, then dead-lettered by the replaying consumer, if it has one).

    Example::

        consumer_spec("dlq-replay", topics=["chat.messages.dlq"], group_id="dlq-replay",
                      processor=replay_processor(producer), settings=settings.mq,
                      bridge=bridge, depends_on=("bridge",))
    """

    async def replay(msg: Message) -> None:
        target = topic
        if target is None:
            raw = msg.headers.get(DLQ_ORIGINAL_TOPIC)
            if not raw:
                raise ValueError(f"no {DLQ_ORIGINAL_TOPIC} header: not a dead letter")
            target = raw.decode()
        headers = {k: v for k, v in msg.headers.items() if k not in DLQ_HEADERS}
        await producer.send(target, msg.value, key=msg.key, headers=headers)

    return replay
