"""Lock holders in their own OS processes, for the lock tests.

``python -m tests.gochat_actors.lock._worker contend URL PREFIX NAME OUT START_AT SECONDS``:
from ``START_AT`` (``time.monotonic()``, the same clock in every process on Linux) for
``SECONDS``, take the lock again and again; inside it append ``token start end pid`` to
``OUT`` (one ``O_APPEND`` write per line).

``python -m tests.gochat_actors.lock._worker hold URL PREFIX NAME TTL``: take the lock,
print ``acquired <token>`` after its second renewal, and keep it (renewing) until killed.
"""

from __future__ import annotations

import os
import random
import sys
import time

import trio

from gochat_actors import Dsn, LockNotAcquired
from gochat_actors.cache import CacheSettings
from gochat_actors.lock import Locks, LockSettings


def _locks(url: str, prefix: str) -> Locks:
    # Connecting may take longer than the default budget: eight interpreters start at
    # once on a loaded 2-core machine (it failed there at op_timeout's default).
    cache = CacheSettings(url=Dsn(url), key_prefix=prefix, op_timeout=15.0)
    return Locks(LockSettings(), cache_settings=cache)


async def contend(
    url: str, prefix: str, name: str, out: str, start_at: float, seconds: float
) -> None:
    locks = _locks(url, prefix)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(locks.run)
            await trio.sleep(max(0.0, start_at - time.monotonic()))
            end_at = start_at + seconds
            while time.monotonic() < end_at:
                try:
                    async with locks.hold(name, ttl=2.0, wait=1.0) as lease:
                        start = time.monotonic()
                        # mostly short bodies; a few outlive ttl/3, so renewals happen too
                        work = random.uniform(0.9, 1.1) if random.random() < 0.01 else 0.002
                        await trio.sleep(random.uniform(0, work))
                        end = time.monotonic()
                        os.write(fd, f"{lease.token} {start!r} {end!r} {os.getpid()}\n".encode())
                except LockNotAcquired:
                    pass
            nursery.cancel_scope.cancel()
    finally:
        os.close(fd)


async def hold(url: str, prefix: str, name: str, ttl: float) -> None:
    locks = _locks(url, prefix)
    async with trio.open_nursery() as nursery:
        await nursery.start(locks.run)
        async with locks.hold(name, ttl=ttl) as lease:
            while True:  # announce it once it has renewed twice: a steady holder
                if lease.renewals >= 2:
                    break
                await trio.sleep(ttl / 10)
            print(f"acquired {lease.token}", flush=True)
            await trio.sleep_forever()


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "contend":
        url, prefix, name, out, start_at, seconds = args
        trio.run(contend, url, prefix, name, out, float(start_at), float(seconds))
    elif mode == "hold":
        url, prefix, name, ttl = args
        trio.run(hold, url, prefix, name, float(ttl))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
