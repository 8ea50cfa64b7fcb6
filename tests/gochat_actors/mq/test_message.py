"""Records and messages: headers the producer adds, decoding, partitioning, error mapping."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import errors as kafka_errors
from aiokafka.partitioner import murmur2

from gochat_actors import MessageTooLarge, MQError, MQTimeout, MQUnavailable
from gochat_actors.log import current_trace_id, trace_context
from gochat_actors.mq import TIMESTAMP_HEADER, TRACE_ID_HEADER, Message, OutgoingRecord
from gochat_actors.mq._errors import kafka_errors as translating
from gochat_actors.mq._errors import translate
from gochat_actors.mq._message import outgoing_record
from gochat_actors.mq._protocol import ConsumerOptions, murmur2_partition


@dataclass
class Raw:
    """A consumed record as a backend hands it over (headers as any broker may send)."""

    headers: list[tuple[Any, Any]] = field(default_factory=list)
    topic: str = "t"
    partition: int = 1
    offset: int = 7
    key: bytes | None = b"k"
    value: bytes | None = b"v"
    timestamp: int = 1_700_000_000_123


def test_outgoing_record_adds_trace_id_and_timestamp() -> None:
    before = int(time.time())
    with trace_context("trace-abc"):
        record = outgoing_record("chat", b"hi", b"room:1", {"k": b"v"})
    headers = dict(record.headers)
    assert headers[TRACE_ID_HEADER] == b"trace-abc"
    assert before <= int(headers[TIMESTAMP_HEADER]) <= int(time.time())
    assert headers["k"] == b"v"
    assert next(iter(headers)) == "k", "the caller's headers come first"
    assert abs(record.timestamp_ms / 1000 - time.time()) < 5


def test_outgoing_record_makes_a_trace_id_when_none_is_bound() -> None:
    assert current_trace_id() is None
    first = dict(outgoing_record("chat", b"a").headers)[TRACE_ID_HEADER]
    second = dict(outgoing_record("chat", b"a").headers)[TRACE_ID_HEADER]
    assert len(first) == 32
    assert first != second


def test_outgoing_record_keeps_the_callers_trace_and_timestamp_headers() -> None:
    record = outgoing_record("chat", b"a", headers=[("trace_id", b"mine"), ("timestamp", b"1")])
    assert record.headers == (("trace_id", b"mine"), ("timestamp", b"1"))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"topic": ""}, ValueError, "topic"),
        ({"value": "text"}, TypeError, "value must be bytes"),
        ({"key": 42}, TypeError, "key must be bytes"),
        ({"value": None, "key": None}, ValueError, "needs a value or a key"),
        ({"headers": {"k": "v"}}, TypeError, "header 'k' must be bytes"),
        ({"headers": {"": b"v"}}, TypeError, "header names"),
        ({"partition": -1}, ValueError, "partition"),
    ],
)
def test_outgoing_record_rejects_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    args: dict[str, object] = {"topic": "chat", "value": b"v", **kwargs}
    with pytest.raises(error, match=match):
        outgoing_record(**args)  # type: ignore[arg-type]


def test_record_size_counts_key_value_and_headers() -> None:
    assert OutgoingRecord("t", b"12345", b"ab", (("h", b"xyz"),)).size == 5 + 2 + 1 + 3
    assert OutgoingRecord("t", None, b"ab").size == 2


def test_message_from_record() -> None:
    raw = Raw(headers=[("trace_id", b"t-1"), ("a", b"1"), ("a", b"2"), ("n", None)])
    msg = Message.from_record(raw)
    assert msg == Message(
        "t", 1, 7, b"k", b"v", {"trace_id": b"t-1", "a": b"2", "n": b""}, "t-1", 1_700_000_000.123
    )


def test_message_without_trace_id_gets_a_new_one() -> None:
    assert len(Message.from_record(Raw()).trace_id) == 32
    assert len(Message.from_record(Raw(headers=[("trace_id", b"")])).trace_id) == 32


@pytest.mark.parametrize(
    "headers",
    [
        [("trace_id", b"\xff\xfe")],
        [("trace_id", b"x" * 129)],
        [("trace_id", b"line\nbreak")],
        [(b"bytes-name", b"v")],
        [("k", "str value")],
    ],
)
def test_undecodable_records_raise(headers: list[tuple[Any, Any]]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Message.from_record(Raw(headers=headers))


def test_murmur2_partition_is_kafkas() -> None:
    for n in range(300):
        key = bytes(range(n % 23)) + b"room:%d" % n
        for partitions in (1, 3, 8, 12):
            assert murmur2_partition(key, partitions) == (murmur2(key) & 0x7FFFFFFF) % partitions


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (kafka_errors.KafkaConnectionError("closed"), MQUnavailable),
        (kafka_errors.NoBrokersAvailable(), MQUnavailable),
        (ConnectionResetError("reset"), MQUnavailable),
        (kafka_errors.KafkaTimeoutError(), MQTimeout),
        (TimeoutError(), MQTimeout),
        (kafka_errors.MessageSizeTooLargeError(), MessageTooLarge),
        (kafka_errors.CommitFailedError(), MQError),
        (kafka_errors.UnknownTopicOrPartitionError(), MQError),
    ],
)
def test_driver_errors_are_translated(exc: Exception, expected: type[MQError]) -> None:
    with pytest.raises(expected) as caught, translating("send"):
        raise exc
    assert type(caught.value) is expected
    assert caught.value.__cause__ is exc
    assert str(caught.value).startswith("send: ")


def test_other_errors_pass_through() -> None:
    assert translate(KeyError("x"), "send") is None
    with pytest.raises(KeyError), translating("send"):
        raise KeyError("x")


def test_consumer_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_records"):
        ConsumerOptions(max_records=0)
    with pytest.raises(ValueError, match="auto_offset_reset"):
        ConsumerOptions(auto_offset_reset="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="session_timeout"):
        ConsumerOptions(session_timeout=0)


@pytest.mark.parametrize(
    "trace_id",
    [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "req-7",
        "a" * 128,
        "trace abc",
        "Ünïcode-trace",
        "x",
        "\u00dc" * 128,  # 256 bytes, 128 characters
    ],
)
def test_printable_trace_ids_up_to_128_characters_are_kept(trace_id: str) -> None:
    msg = Message.from_record(Raw(headers=[("trace_id", trace_id.encode())]))
    assert msg.trace_id == trace_id


@pytest.mark.parametrize("trace_id", [b"a" * 129, b"\xc3\x9c" * 129, b"tab\there"])
def test_trace_ids_over_128_characters_or_not_printable_raise(trace_id: bytes) -> None:
    with pytest.raises(ValueError, match="printable"):
        Message.from_record(Raw(headers=[("trace_id", trace_id)]))


def test_a_traceparent_that_disagrees_with_trace_id_wins() -> None:
    parent = f"00-{'1' * 32}-{'2' * 16}-01".encode()
    for raw in (b"other", b"3" * 32):
        headers = [("traceparent", parent), ("trace_id", raw)]
        assert Message.from_record(Raw(headers=headers)).trace_id == "1" * 32
    headers = [("traceparent", b"garbage"), ("trace_id", b"3" * 32)]
    assert Message.from_record(Raw(headers=headers)).trace_id == "3" * 32
