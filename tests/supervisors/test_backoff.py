"""Backoff: the sequence, its cap, and the jitter bounds (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisors import Backoff
from supervisors._backoff import jitter_draw


def test_exponential_sequence_is_capped() -> None:
    b = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.0)
    assert [round(b.base(n), 6) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.base(10_000) == 1.0


@given(
    initial=st.floats(0.001, 10),
    factor=st.floats(1, 100),
    multiplier=st.floats(1, 10),
    jitter=st.floats(0, 1),
    attempt=st.integers(0, 5000),
    u=st.floats(0, 1, exclude_max=True),
)
def test_jitter_stays_within_bounds(
    initial: float, factor: float, multiplier: float, jitter: float, attempt: int, u: float
) -> None:
    b = Backoff(initial=initial, maximum=initial * factor, multiplier=multiplier, jitter=jitter)
    low, high = b.bounds(attempt)
    delay = b.delay(attempt, u)
    assert low - 1e-9 <= delay <= high + 1e-9
    assert delay <= b.maximum
    assert low <= b.base(attempt) <= max(high, b.base(attempt))


def test_seeded_draws_are_reproducible_and_spread() -> None:
    draws = [jitter_draw(7, "a", n) for n in range(50)]
    assert draws == [jitter_draw(7, "a", n) for n in range(50)]
    assert draws != [jitter_draw(8, "a", n) for n in range(50)]
    assert all(0 <= d < 1 for d in draws)
    assert len(set(draws)) == 50


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial": -1}, "initial"),
        ({"initial": 2, "maximum": 1}, "maximum"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 1.5}, "jitter"),
        ({"reset_after": float("nan")}, "reset_after"),
    ],
)
def test_bad_backoff(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff(**kwargs)
