"""Adversarial checks of the Sentinel view and URLs (review branch ``redisbreak``)."""

from __future__ import annotations

import pydantic
import pytest
import trio
import trio.testing

from gochat_actors.cache import CacheSettings

from .test_redis_sentinel import UP, _watch


async def test_one_hung_sentinel_does_not_make_the_service_unready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Three sentinels, the first one SIGSTOPped (its TCP connection stays open, silent).
    assert await _watch("hang", UP, UP).no_master() is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://127.0.0.1:26379/gmaster/²", "database must be a number"),
        ("redis+sentinel://127.0.0.1:²/gmaster/0", "port must be an integer"),
        ("redis+cluster://h:1,h:²", "port must be an integer"),
        ("redis://127.0.0.1/²", "database must be a number"),  # was accepted: db 0
    ],
)
def test_a_non_ascii_digit_gets_the_parts_one_line_error(url: str, problem: str) -> None:
    """'²' passes str.isdigit() and then int() fails (or coredis ignored it): each part's
    own message now."""
    with pytest.raises(pydantic.ValidationError) as caught:
        CacheSettings(url=url)  # type: ignore[arg-type]
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://:hunter2@h/m/x",  # short: pydantic elides long inputs
        "redis+cluster://:hunter2@h:1,h:2/3",
    ],
)
def test_a_bad_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        CacheSettings(url=url)  # type: ignore[arg-type]
    assert "hunter2" not in str(caught.value)


async def test_one_hung_sentinel_does_not_stop_confirming_the_master(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # confirm() asked them in turn too: the hung first one used the whole timeout.
    assert await _watch("hang", UP, UP).confirm() is None
    assert await _watch("hang", "hang", UP).confirm() == "1 of 3 sentinels of 'gmaster' answered"


async def test_the_watch_learns_the_sentinels_down_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watch = _watch({**UP, "down-after-milliseconds": b"1000"}, "hang")
    assert watch.down_after is None  # not asked yet
    assert await watch.confirm() == "1 of 2 sentinels of 'gmaster' answered"
    assert watch.down_after == 1.0
