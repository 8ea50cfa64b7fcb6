"""Redis through coredis, natively on trio (no asyncio bridge)."""

from __future__ import annotations

import coredis


async def test_coredis_on_trio(redis_url: str, redis_key_prefix: str) -> None:
    """SET/GET, a MULTI/EXEC pipeline and a TTL, under the test's own key prefix."""
    key, counter = redis_key_prefix + "greeting", redis_key_prefix + "counter"
    client = coredis.Redis.from_url(redis_url, decode_responses=True)
    async with client:
        assert await client.set(key, "hello", ex=60)
        assert await client.get(key) == "hello"
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr(counter)
            pipe.incr(counter)
        assert await client.get(counter) == "2"
        assert 0 < await client.ttl(key) <= 60
        assert sorted(await client.keys(redis_key_prefix + "*")) == sorted([key, counter])
