"""The JSON codec against hostile values: nesting deeper than the interpreter's
recursion limit (written by us or found in the cache, put there by another service),
``default=`` hooks that never bottom out. The codec contract (docs/cache.md) is
``TypeError``/``ValueError`` on ``set`` and ``CacheError`` on ``get``; a raw
``RecursionError`` (a ``RuntimeError``) is neither."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gochat_actors import CacheError
from gochat_actors.cache import JSON, Cache, CacheSettings, JsonCodec, MemoryStore


def _nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth):
        child: list[Any] = []
        inner.append(child)
        inner = child
    return outer


@pytest.fixture
async def cache() -> AsyncIterator[Cache]:
    cache = Cache(CacheSettings(op_timeout=0.5), store=MemoryStore())
    async with trio.open_nursery() as nursery:
        await nursery.start(cache.run)
        yield cache
        nursery.cancel_scope.cancel()


async def test_a_value_nested_too_deep_is_a_value_error_on_set(cache: Cache) -> None:
    with pytest.raises(ValueError, match=r"cache.set\('k:deep'\): the json codec cannot encode"):
        await cache.set("k:deep", _nested(100_000), codec=JSON)
    assert await cache.mget(["k:deep"]) == [None]


async def test_stored_json_nested_too_deep_is_a_cache_error_on_get(cache: Cache) -> None:
    await cache.set("k:deep", b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(CacheError, match="cannot be decoded by the json codec"):
        await cache.get("k:deep", codec=JSON)
    for data in (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, b"[" * 100_000):
        await cache.set("k:deep", data)
        with pytest.raises(CacheError, match="cannot be decoded by the json codec"):
            await cache.get("k:deep", codec=JSON)


async def test_a_default_hook_that_never_bottoms_out_is_a_value_error(cache: Cache) -> None:
    endless = JsonCodec(default=lambda value: [value])  # wraps the object again and again
    with pytest.raises(ValueError, match="json codec cannot encode"):
        await cache.set("k:x", object(), codec=endless)
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError, match="json codec cannot encode"):
        await cache.set("k:x", circular, codec=JSON)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=_json_values, depth=st.integers(0, 3000))
def test_the_json_codec_round_trips_or_refuses_with_a_value_error(value: Any, depth: int) -> None:
    """Any value, wrapped ``depth`` lists deep: stored and read back equal, or refused
    with ``TypeError``/``ValueError`` (a lone surrogate, a nesting too deep), and bytes
    that were refused on the way in are refused on the way out too, as ``ValueError``."""
    wrapped: Any = value
    for _ in range(depth):
        wrapped = [wrapped]
    try:
        data = JSON.encode(wrapped)
    except (TypeError, ValueError):
        return  # refused as the contract says (a lone surrogate, a nesting too deep)
    try:
        back = JSON.decode(data)
    except ValueError:
        pytest.fail("bytes the codec wrote cannot be read back")
    assert back == wrapped
    # The same nesting, read from bytes some other writer stored:
    with pytest.raises(ValueError, match="nested too deeply"):
        JSON.decode(b"[" * (depth + 100_000) + b"]" * (depth + 100_000))
