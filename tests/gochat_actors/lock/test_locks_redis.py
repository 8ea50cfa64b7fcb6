"""``Locks`` on a real Redis: a paused server (private, ``kill -STOP``), a holder killed
with SIGKILL, a cancelled holder, and 8 processes contending for 20 s."""

from __future__ import annotations

import functools
import itertools
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from gochat_actors import Dsn, LockLost, LockNotAcquired
from gochat_actors.cache import CacheSettings, open_redis_cache
from gochat_actors.lock import Lease, Locks, LockSettings, lock_keys
from gochat_actors.metrics import Metrics
from tests._private import PrivateServer

ROOT = Path(__file__).resolve().parents[3]
WORKER = [sys.executable, "-m", "tests.gochat_actors.lock._worker"]


def make_locks(url: str, prefix: str = "", op_timeout: float = 0.5) -> Locks:
    cache = CacheSettings(url=Dsn(url), key_prefix=prefix, op_timeout=op_timeout)
    return Locks(LockSettings(), cache_settings=cache, metrics=Metrics())


@asynccontextmanager
async def running(locks: Locks) -> AsyncIterator[Locks]:
    async with trio.open_nursery() as nursery:
        await nursery.start(locks.run)
        yield locks
        nursery.cancel_scope.cancel()


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Poll ``predicate()`` until true (explicit readiness), failing after ``timeout``."""
    with trio.fail_after(timeout):
        while True:
            if predicate():
                return
            await trio.sleep(0.01)


async def test_paused_redis_cancels_the_body_before_the_ttl_runs_out(
    private_redis: PrivateServer,
) -> None:
    seen: dict[str, Any] = {}
    async with running(make_locks(private_redis.url)) as locks:

        async def holder() -> None:
            async with locks.hold("room:1", ttl=2.0) as lease:
                seen["lease"] = lease
                await wait_for(lambda: lease.renewals >= 1)  # a renewal went through
                private_redis.pause()  # kill -STOP
                try:
                    await trio.sleep_forever()
                finally:
                    seen["cancelled_at"] = trio.current_time()

        try:
            with pytest.raises(LockLost):
                await holder()
        finally:
            private_redis.resume()  # kill -CONT
        lease: Lease = seen["lease"]
        assert lease.lost.is_set()
        assert "no renewal" in str(lease.lost_reason)
        # cancelled at the safe deadline, a margin before the key can expire (the exact
        # timing is tested on the trio clock, with the in-memory backend)
        assert lease.deadline == pytest.approx(lease.renewed_at + 2.0 - 0.2)
        assert seen["cancelled_at"] >= lease.deadline
        # the next acquire works (at once, or once the old key's TTL is over)
        async with locks.hold("room:1", ttl=2.0, wait=3.0) as again:
            assert again.token == lease.token + 1


async def test_cancelled_holder_deletes_its_key_at_once(
    redis_url: str, redis_key_prefix: str
) -> None:
    key, _ = lock_keys(redis_key_prefix, "room:1")
    async with (
        running(make_locks(redis_url, redis_key_prefix)) as locks,
        open_redis_cache(redis_url) as raw,
    ):
        with trio.CancelScope() as scope:
            async with locks.hold("room:1", ttl=30.0):
                assert await raw.get(key) is not None
                scope.cancel()
                await trio.sleep_forever()
        assert await raw.get(key) is None  # not left behind for 30 s
        async with locks.hold("room:1") as lease:  # free for the next one at once
            assert lease.token == 2


async def test_sigkilled_holder_frees_the_lock_after_its_ttl_and_not_before(
    redis_url: str, redis_key_prefix: str
) -> None:
    ttl = 1.5
    key, _ = lock_keys(redis_key_prefix, "room:1")
    args = [*WORKER, "hold", redis_url, redis_key_prefix, "room:1", str(ttl)]
    proc = await trio.lowlevel.open_process(args, cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        output = b""
        with trio.fail_after(30):  # its log lines first, then "acquired <token>"
            while b"acquired " not in output or not output.endswith(b"\n"):
                chunk = await proc.stdout.receive_some()
                assert chunk, f"the holder exited before acquiring: {output!r}"
                output += chunk
        line = output[output.index(b"acquired ") :]
        holder_token = int(line.split()[1])
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    async with (
        running(make_locks(redis_url, redis_key_prefix)) as locks,
        open_redis_cache(redis_url) as raw,
    ):
        with pytest.raises(LockNotAcquired):  # not free right after the kill ...
            async with locks.hold("room:1"):
                pass
        asked = trio.current_time()
        left = await raw.ttl(key)
        assert left is not None
        assert 0 < left <= ttl
        async with locks.hold("room:1", wait=ttl + 5.0) as lease:
            got = trio.current_time()
        # ... nor before its TTL ran out (Redis answered the winning attempt after the
        # key expired, at >= asked + left), and free then (within the wait)
        assert got >= asked + left - 0.002  # PTTL is in whole milliseconds
        assert lease.token > holder_token


@pytest.mark.slow
async def test_eight_processes_never_hold_the_lock_at_once(
    redis_url: str, redis_key_prefix: str, tmp_path: Path
) -> None:
    out = tmp_path / "record.txt"
    seconds, processes = 20.0, 8
    start_at = time.monotonic() + 5.0  # time for every interpreter to start
    args = [*WORKER, "contend", redis_url, redis_key_prefix, "room:1", str(out)]
    args += [repr(start_at), str(seconds)]
    async with trio.open_nursery() as nursery:
        for _ in range(processes):
            nursery.start_soon(functools.partial(trio.run_process, args, cwd=ROOT, check=True))
    records = []
    for line in out.read_text().splitlines():
        token, start, end, pid = line.split()
        records.append((int(token), float(start), float(end), int(pid)))
    records.sort(key=lambda r: r[1])
    assert len(records) >= 100
    assert len({r[3] for r in records}) == processes  # everyone got it
    assert start_at <= records[0][1]
    for (token_a, _, end_a, _), (token_b, start_b, _, _) in itertools.pairwise(records):
        assert token_a < token_b, "tokens must increase in time order"
        assert end_a <= start_b, "two holders at once"
