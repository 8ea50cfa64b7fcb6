"""MemoryServer's delay knobs refuse what is no duration when set, naming the knob."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from sqlalchemy import text

from gochat_actors.db import MemoryDB

KNOBS = ("latency", "statement_latency", "reply_latency", "delay")


@pytest.mark.parametrize("knob", KNOBS)
@pytest.mark.parametrize("value", [math.nan, -1.0, -math.inf])
def test_a_knob_refuses_nan_and_negatives(knob: str, value: float) -> None:
    with MemoryDB() as memdb:
        server = memdb.replica(0)
        with pytest.raises(ValueError, match=f"MemoryServer.{knob} must be a number >= 0"):
            setattr(server, knob, value)
        assert getattr(server, knob) == 0.0


@pytest.mark.parametrize("knob", KNOBS)
def test_a_knob_refuses_what_is_no_number(knob: str) -> None:
    with MemoryDB() as memdb:
        with pytest.raises(TypeError, match=knob):
            setattr(memdb.primary, knob, True)
        with pytest.raises(TypeError, match=knob):
            setattr(memdb.primary, knob, "1")


@pytest.mark.parametrize("knob", KNOBS)
def test_a_knob_takes_zero_ints_and_infinity(knob: str) -> None:
    with MemoryDB() as memdb:
        server = memdb.primary
        for value, expected in ((2, 2.0), (0, 0.0), (math.inf, math.inf), (0.5, 0.5)):
            setattr(server, knob, value)
            assert getattr(server, knob) == expected
            assert type(getattr(server, knob)) is float


async def test_an_infinite_delay_keeps_a_replica_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with MemoryDB() as memdb:
        replica = memdb.replica(0)
        replica.catch_up()
        replica.delay = math.inf
        with memdb.primary.engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        await trio.sleep(3600)
        replica.catch_up()
        assert replica.lag() == pytest.approx(3600)
