"""The bit layout: compose/parse round trips, bounds, and settings-driven splits."""

from __future__ import annotations

import doctest
import importlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gochat_actors.idgen import IdGenerator, IdGenSettings, SnowflakeLayout, SnowflakeParts


@st.composite
def layouts(draw: st.DrawFn) -> SnowflakeLayout:
    machine_bits = draw(st.integers(1, 20))
    sequence_bits = draw(st.integers(1, 20))
    return SnowflakeLayout(
        epoch_ms=draw(st.integers(0, 2**41)),
        timestamp_bits=63 - machine_bits - sequence_bits,
        machine_bits=machine_bits,
        sequence_bits=sequence_bits,
    )


@given(layouts(), st.data())
def test_compose_then_parse_round_trips(layout: SnowflakeLayout, data: st.DataObject) -> None:
    ts = data.draw(st.integers(layout.epoch_ms, layout.max_timestamp_ms))
    machine = data.draw(st.integers(0, layout.max_machine_id))
    seq = data.draw(st.integers(0, layout.max_sequence))
    i = layout.compose(ts, machine, seq)
    assert 0 <= i < 2**63
    assert layout.parse(i) == SnowflakeParts(ts, machine, seq)


@given(layouts(), st.integers(0, 2**63 - 1))
def test_parse_then_compose_round_trips(layout: SnowflakeLayout, i: int) -> None:
    assert layout.compose(*layout.parse(i)) == i


@given(st.integers(0, 2**40), st.integers(0, 1023), st.integers(0, 4095))
def test_ids_order_by_time_first(ms: int, machine: int, seq: int) -> None:
    layout = SnowflakeLayout(epoch_ms=0)
    assert layout.compose(ms + 1, 0, 0) > layout.compose(ms, machine, seq)


def test_default_layout_matches_the_classic_snowflake() -> None:
    layout = SnowflakeLayout()
    assert (layout.timestamp_shift, layout.machine_shift) == (22, 12)
    assert (layout.max_machine_id, layout.max_sequence) == (1023, 4095)
    assert layout.compose(1288834974657 + 1, 1, 1) == (1 << 22) | (1 << 12) | 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0, 0), "timestamp_ms must be within"),
        ((2**60, 0, 0), "timestamp_ms must be within"),
        ((10**12, 1024, 0), "machine_id must be within"),
        ((10**12, 0, 4096), "sequence must be within"),
        ((10**12, -1, 0), "machine_id must be within"),
    ],
)
def test_compose_names_the_part_that_does_not_fit(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SnowflakeLayout(epoch_ms=10**12 - 5).compose(*args)


def test_parse_refuses_what_is_not_an_id() -> None:
    layout = SnowflakeLayout()
    with pytest.raises(ValueError, match="id must be within"):
        layout.parse(-1)
    with pytest.raises(ValueError, match="id must be within"):
        layout.parse(2**63)
    with pytest.raises(TypeError, match="id must be an int"):
        layout.parse("12")  # type: ignore[arg-type]


def test_layout_refuses_bad_splits() -> None:
    with pytest.raises(ValueError, match="must be 63"):
        SnowflakeLayout(timestamp_bits=40)
    with pytest.raises(ValueError, match="machine_bits must be an int >= 1"):
        SnowflakeLayout(timestamp_bits=51, machine_bits=0, sequence_bits=12)
    with pytest.raises(ValueError, match="epoch_ms"):
        SnowflakeLayout(epoch_ms=-1)


def test_generator_layout_follows_the_settings() -> None:
    settings = IdGenSettings(
        timestamp_bits=45, machine_bits=6, sequence_bits=12, machine_id=63, epoch_ms=10**12
    )
    ids = IdGenerator(settings)
    i = ids.next_id()
    parts = ids.parse(i)
    assert parts.machine_id == 63
    assert ids.compose(*parts) == i
    assert ids.layout.max_machine_id == 63
    assert repr(ids.layout).startswith("SnowflakeLayout(epoch_ms=1000000000000")


@pytest.mark.parametrize(
    "name",
    [
        "gochat_actors.idgen._layout",
        "gochat_actors.idgen._protocol",
        "gochat_actors.idgen._errors",
    ],
)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0
