"""open_service on the embedded defaults: every component up, no server needed."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from sqlalchemy import text

from gochat_actors import ComponentUnavailable, GochatError, load_settings, open_service
from gochat_actors.service import COMPONENTS
from supervisors import ChildSpec, ChildState

ROOT = Path(__file__).resolve().parents[3]


def settings_without_http() -> object:
    return load_settings(http={"enabled": False})


async def test_the_standard_tree_starts_in_order_and_every_component_works() -> None:
    settings = load_settings(http={"port": 0})
    async with open_service(settings) as service:
        ids = [info.id for info in service.supervisor.which_children()]
        assert ids == [
            "bridge",
            "log",
            "metrics",
            "http",
            "db",
            "cache",
            "locks",
            "ids",
            "producer",
        ]
        assert {info.state for info in service.supervisor.which_children()} == {ChildState.RUNNING}
        assert service.supervisor.health().ready
        first, second = service.ids.next_id(), service.ids.next_id()
        assert second > first
        await service.cache.set("user:1", b"ann", ttl=60)
        assert await service.cache.get("user:1") == b"ann"
        async with service.db.transaction() as session:
            await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
            await session.execute(text("INSERT INTO t (id) VALUES (1)"))
        async with service.db.reader() as session:
            assert (await session.execute(text("SELECT COUNT(*) FROM t"))).scalar_one() == 1
        async with service.locks.hold("room:1", ttl=5) as lease:
            assert lease.token >= 1
        meta = await service.producer.send("t", b"payload", key=b"k")
        assert meta.topic == "t"
        assert service.http.url is not None
        assert service.settings is settings


async def test_add_child_and_consumer_spec() -> None:
    got: list[bytes | None] = []
    done = trio.Event()

    async def worker(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started("mine")
        await trio.sleep_forever()

    async def processor(msg: object) -> None:
        got.append(getattr(msg, "value", None))
        done.set()

    async with open_service(load_settings(http={"enabled": False})) as service:
        assert await service.add_child(ChildSpec("mine", worker)) == "mine"
        await service.add_child(
            service.consumer_spec("c", topics=["topic-a"], group_id="g", processor=processor)
        )
        await service.producer.send("topic-a", b"hello")
        with trio.fail_after(10):
            await done.wait()
    assert got == [b"hello"]


async def test_a_subset_of_components() -> None:
    async with open_service(settings_without_http(), components=["cache", "ids"]) as service:  # type: ignore[arg-type]
        ids = [info.id for info in service.supervisor.which_children()]
        assert ids == ["bridge", "log", "metrics", "cache", "ids"]
        with pytest.raises(ComponentUnavailable, match=r"service\.db is not part of this service"):
            service.db  # noqa: B018
        assert isinstance(ComponentUnavailable("x"), GochatError)


async def test_unknown_components_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown components \['kafka'\]"):
        async with open_service(settings_without_http(), components=["kafka"]):  # type: ignore[arg-type]
            pass


def test_components_constant() -> None:
    assert COMPONENTS == ("http", "db", "cache", "locks", "ids", "producer")


async def test_run_stops_gracefully_on_sigterm() -> None:
    script = (
        "import trio, gochat_actors\n"
        "async def main(service):\n"
        "    print('READY', service.ids.next_id() > 0, flush=True)\n"
        "    await trio.sleep_forever()\n"
        "try:\n"
        "    print('result', gochat_actors.run(main, gochat_actors.load_settings("
        "http={'enabled': False}, log={'level': 'error'})), flush=True)\n"
        "except SystemExit as exc:\n"
        "    print('result exit', exc.code, flush=True)\n"
        "    raise\n"
    )
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    buf = b""
    with trio.fail_after(60):
        while b"READY" not in buf:
            chunk = await proc.stdout.receive_some()
            assert chunk, buf
            buf += chunk
        proc.send_signal(signal.SIGTERM)
        while b"result" not in buf or not buf.endswith(b"\n"):
            chunk = await proc.stdout.receive_some()
            assert chunk, buf
            buf += chunk
        assert await proc.wait() == 128 + signal.SIGTERM
    assert b"READY True" in buf
    assert b"result exit 143" in buf  # stopped gracefully, then the signal's exit code
