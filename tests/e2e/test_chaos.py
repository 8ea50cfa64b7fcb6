"""The demo tree against the real servers for 60 s, with the ChaosMonkey killing actors
and Redis, etcd and the broker each paused for a few seconds: nothing lost, no duplicate
id, never two compactors at once, healthy at the end, shutdown within its budget."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import trio
from rich.console import Console

from gochat_actors import load_settings
from gochat_actors.demo import Summary, run_demo
from tests._private import PrivateServer

from ._config import COMPACTIONS, db_rows, demo_toml, overlapping

pytestmark = [pytest.mark.slow, pytest.mark.mariadb, pytest.mark.redis, pytest.mark.etcd,
              pytest.mark.kafka]  # fmt: skip

DURATION = 60.0


async def test_demo_survives_chaos_and_paused_servers(
    tmp_path: Path,
    mariadb_url: str,
    private_redis: PrivateServer,
    private_etcd: PrivateServer,
    private_tansu: PrivateServer,
) -> None:
    config = demo_toml(
        tmp_path / "e2e.toml",
        mariadb_url=mariadb_url,
        redis=private_redis,
        etcd=private_etcd,
        broker=private_tansu,
    )
    settings = load_settings(config)
    paused: list[str] = []
    result: list[Summary | None] = []

    async def pauser() -> None:
        # Each server hangs (kill -STOP) for a few seconds, one after the other.
        for at, server, seconds in ((10, private_redis, 4), (25, private_etcd, 6),
                                    (40, private_tansu, 5)):  # fmt: skip
            await trio.sleep_until(start + at)
            server.pause()
            try:
                await trio.sleep(seconds)
            finally:
                server.resume()
            paused.append(server.name)

    async def demo() -> None:
        result.append(
            await run_demo(
                settings,
                duration=DURATION,
                chaos=0.3,
                live=False,
                rate=50.0,
                seed=11,
                console=Console(file=io.StringIO()),
            )
        )

    start = trio.current_time()
    with trio.fail_after(DURATION + 180):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pauser)
            nursery.start_soon(demo)
    summary = result[0]
    assert summary is not None
    assert paused == ["redis", "etcd", "tansu"]
    # Counts that hold on any machine: how many messages, kills and compactions fit in
    # 60 s depends on its speed, that some happened does not.
    assert summary.sent > 0
    assert summary.chaos_kills >= 1
    assert summary.lost == 0, summary
    assert summary.persisted == summary.sent
    assert summary.duplicate_ids == 0
    assert summary.compactor_overlaps == 0
    assert summary.compactions >= 1
    assert summary.healthy_at_end
    assert summary.overstayed == ()
    assert overlapping(db_rows(mariadb_url, COMPACTIONS)) == []
