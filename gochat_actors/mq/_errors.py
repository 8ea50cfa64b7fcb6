"""aiokafka's exceptions translated at the edge: theirs becomes ``__cause__`` of one of ours.

Imported only by the Kafka backend (aiokafka is imported inside the functions, so this
module itself never loads the driver).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from .._exceptions import MessageTooLarge, MQError, MQTimeout, MQUnavailable

__all__ = ["kafka_errors", "translate"]


def translate(exc: BaseException, what: str) -> MQError | None:
    """Our error for a driver (or socket) exception raised while doing ``what``, or None
    when ``exc`` is not a broker error (a bug: let it through unchanged).

    Example::

        err = translate(KafkaConnectionError("closed"), "send")   # MQUnavailable
    """
    from aiokafka import errors as kafka

    if isinstance(exc, MQError):
        return exc
    detail = f"{what}: {type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(
        exc,
        kafka.MessageSizeTooLargeError | kafka.RecordTooLargeError | kafka.RecordListTooLargeError,
    ):
        return MessageTooLarge(detail)
    if isinstance(exc, kafka.KafkaTimeoutError | kafka.RequestTimedOutError | asyncio.TimeoutError):
        return MQTimeout(detail)
    if isinstance(
        exc,
        kafka.KafkaConnectionError
        | kafka.NoBrokersAvailable
        | kafka.NodeNotReadyError
        | kafka.KafkaUnavailableError
        | kafka.BrokerNotAvailableError
        | kafka.GroupCoordinatorNotAvailableError
        | kafka.NotCoordinatorForGroupError
        | kafka.LeaderNotAvailableError
        | kafka.ProducerClosed
        | kafka.ConsumerStoppedError
        | ConnectionError,
    ):
        return MQUnavailable(detail)
    if isinstance(exc, kafka.KafkaError | OSError):
        return MQError(detail)
    return None


@contextmanager
def kafka_errors(what: str) -> Iterator[None]:
    """Re-raise broker errors inside the block as ours (the original as ``__cause__``).

    Example::

        with kafka_errors("commit"):
            await consumer.commit(offsets)
    """
    try:
        yield
    except Exception as exc:
        err = translate(exc, what)
        if err is None or err is exc:
            raise
        raise err from exc
