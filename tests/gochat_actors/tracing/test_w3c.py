"""``traceparent`` formatting and parsing (the W3C trace-context rules)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gochat_actors.log import new_trace_id
from gochat_actors.tracing import (
    TraceParent,
    format_traceparent,
    is_w3c_trace_id,
    new_span_id,
    parse_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_the_spec_example_round_trips() -> None:
    header = f"00-{TRACE}-{SPAN}-01".encode()
    assert format_traceparent(TRACE, SPAN) == header
    assert parse_traceparent(header) == TraceParent(TRACE, SPAN, True)
    assert parse_traceparent(header.decode()) == TraceParent(TRACE, SPAN, True)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00") == TraceParent(TRACE, SPAN, False)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent
        f"00-{TRACE.upper()}-{SPAN}-01",  # uppercase
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00_{TRACE}_{SPAN}_01",
    ],
)
def test_invalid_headers_parse_to_none(header: str) -> None:
    assert parse_traceparent(header) is None


def test_a_later_version_may_append_fields() -> None:
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-03-what-ever") == TraceParent(TRACE, SPAN, True)


def test_format_refuses_what_is_not_w3c() -> None:
    with pytest.raises(ValueError, match="trace ID"):
        format_traceparent("trace-7", SPAN)
    with pytest.raises(ValueError, match="span ID"):
        format_traceparent(TRACE, "0" * 16)


def test_trace_ids_of_the_log_module_are_w3c() -> None:
    assert all(is_w3c_trace_id(new_trace_id()) for _ in range(100))
    assert not is_w3c_trace_id("trace-7")
    assert not is_w3c_trace_id("0" * 32)


@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.booleans())
def test_any_valid_pair_round_trips(trace: int, span: int, sampled: bool) -> None:
    trace_id, span_id = f"{trace:032x}", f"{span:016x}"
    header = format_traceparent(trace_id, span_id, sampled)
    assert parse_traceparent(header) == TraceParent(trace_id, span_id, sampled)


def test_span_ids_are_16_hex_digits_and_differ() -> None:
    ids = {new_span_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 16 and int(i, 16) for i in ids)


def test_the_span_id_pool_refill_never_hands_out_an_all_zero_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gochat_actors import _tracing

    zero = "0" * 16
    for read in (bytes(8) + bytes(range(1, 9)) * 256, bytes(range(1, 9)) * 256 + bytes(8)):
        reads = [read, bytes(range(10, 18)) * 257]
        monkeypatch.setattr(_tracing, "urandom", lambda n, reads=reads: reads.pop(0)[:n])
        monkeypatch.setattr(_tracing, "_span_ids", [])
        ids = [_tracing._more_span_ids(), *_tracing._span_ids]
        assert zero not in ids
        assert len(ids) >= 256
        assert set(ids) <= {"0102030405060708", "0a0b0c0d0e0f1011"}

    reads = [bytes(8 * 257), bytes(range(20, 28)) * 257]  # all zero: read again
    monkeypatch.setattr(_tracing, "urandom", lambda n: reads.pop(0)[:n])
    monkeypatch.setattr(_tracing, "_span_ids", [])
    assert _tracing._more_span_ids() == "1415161718191a1b"
    assert set(_tracing._span_ids) == {"1415161718191a1b"}
    assert len(_tracing._span_ids) >= 255


def test_the_span_id_pool_holds_distinct_16_hex_digit_ids() -> None:
    from gochat_actors import _tracing

    _tracing._span_ids.clear()
    first = _tracing._more_span_ids()
    ids = [first, *_tracing._span_ids]
    assert len(ids) >= 256
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and i == f"{int(i, 16):016x}" for i in ids)
