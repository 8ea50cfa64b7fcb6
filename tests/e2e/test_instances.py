"""Three demo processes against the same servers: the consumer group shares the
partitions, each holds its own machine ID, one compactor runs at a time; ``kill -9``
of one -> the others take over and nothing it had sent is lost."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from gochat_actors.idgen import SnowflakeLayout
from tests._private import PrivateServer

from ._config import COMPACTIONS, db_rows, demo_toml, overlapping

pytestmark = [pytest.mark.slow, pytest.mark.mariadb]

ROOT = Path(__file__).resolve().parents[2]
DURATION = 45.0
KILL_AT = 12.0


def start_instance(config: Path, work: Path, name: str) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "gochat_actors.cli", "demo", "--config", str(config),
        "--no-live", "--duration", str(DURATION), "--rate", "40", "--instance", name,
        "--sent-file", str(work / f"{name}.sent"), "--summary-json", str(work / f"{name}.json"),
    ]  # fmt: skip
    with (work / f"{name}.log").open("wb") as log:
        return subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def sent_ids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def test_three_instances_share_the_work_and_survive_a_kill_9(
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
    names = ["a", "b", "c"]
    procs = {name: start_instance(config, tmp_path, name) for name in names}
    try:
        with trio.fail_after(KILL_AT + 60):
            while len(sent_ids(tmp_path / "a.sent")) < 50:  # "a" is really working
                assert procs["a"].poll() is None, (tmp_path / "a.log").read_text()[-3000:]
                await trio.sleep(0.2)
        await trio.sleep(max(0.0, KILL_AT - 5))
        procs["a"].send_signal(signal.SIGKILL)
        procs["a"].wait()
        killed_sent = sent_ids(tmp_path / "a.sent")
        deadline = time.monotonic() + DURATION + 150
        for name in ("b", "c"):
            timeout = max(1.0, deadline - time.monotonic())
            code = await trio.to_thread.run_sync(functools.partial(procs[name].wait, timeout))
            assert code == 0, (tmp_path / f"{name}.log").read_text()[-4000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    summaries = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in ("b", "c")}
    for name, summary in summaries.items():
        assert summary["ok"], (name, summary)
        assert summary["lost"] == 0
        assert summary["persisted_here"] > 0, f"{name} consumed nothing: partitions not shared"
    everything = killed_sent + sent_ids(tmp_path / "b.sent") + sent_ids(tmp_path / "c.sent")
    assert len(killed_sent) >= 50
    assert len(everything) == len(set(everything)), "an id was issued twice"
    stored = {row[0] for row in db_rows(mariadb_url, "SELECT id FROM demo_messages")}
    missing = set(everything) - stored
    assert not missing, f"{len(missing)} acknowledged messages never persisted"
    layout = SnowflakeLayout()
    machine_ids = {
        name: {layout.parse(i).machine_id for i in sent_ids(tmp_path / f"{name}.sent")}
        for name in names
    }
    assert machine_ids["a"].isdisjoint(machine_ids["b"] | machine_ids["c"])
    assert machine_ids["b"].isdisjoint(machine_ids["c"])
    intervals = db_rows(mariadb_url, COMPACTIONS)
    assert len(intervals) >= 3
    assert overlapping(intervals) == []
