"""Generators on the real etcd: many OS processes, 1,024 holders, shutdown."""

from __future__ import annotations

import array
import itertools
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from gochat_actors import Dsn, MachineIdsExhausted
from gochat_actors.idgen import IdGenerator, IdGenSettings, Put, prefix_end
from gochat_actors.idgen._etcd import HttpEtcd
from supervisors import ChildStartError, open_supervisor

ROOT = Path(__file__).resolve().parents[3]
PROCESSES, PER_PROCESS = 20, 100_000


def test_many_processes_distinct_machine_ids_and_no_duplicate(
    etcd_url: str, etcd_key_prefix: str, tmp_path: Path
) -> None:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.gochat_actors.idgen._worker",
                etcd_url,
                etcd_key_prefix,
                str(tmp_path / f"{n}.ids"),
                str(PER_PROCESS),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        for n in range(PROCESSES)
    ]
    try:
        machine_ids = []
        for proc in procs:  # every process holds its ID before any generates
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("ready "), (line, proc.wait(30), proc.communicate())
            machine_ids.append(int(line.split()[1]))
        assert len(set(machine_ids)) == PROCESSES, machine_ids
        for proc in procs:
            out, err = proc.communicate("go\n", timeout=60)
            assert proc.returncode == 0, err
            assert out.splitlines()[-1] == "done"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    layout = IdGenerator(IdGenSettings()).layout
    every: set[int] = set()
    for n, machine_id in enumerate(machine_ids):
        got = array.array("q")
        with open(tmp_path / f"{n}.ids", "rb") as f:
            got.frombytes(f.read())
        ids = got.tolist()
        assert len(ids) == PER_PROCESS
        assert all(a < b for a, b in itertools.pairwise(ids))
        assert {layout.parse(i).machine_id for i in ids[:: PER_PROCESS // 10]} == {machine_id}
        every.update(ids)
    assert len(every) == PROCESSES * PER_PROCESS


async def test_1024_holders_then_exhaustion(etcd_url: str, etcd_key_prefix: str) -> None:
    """1,023 IDs held by other leases (claimed by hand, like other processes would), one
    free at an unknown place: a generator finds it; the next one gets the error."""
    settings = IdGenSettings(etcd=Dsn(etcd_url), key_prefix=etcd_key_prefix)
    prefix = etcd_key_prefix.encode()
    free = random.randrange(1024)
    backend = HttpEtcd(etcd_url)
    try:
        leases = [(await backend.lease_grant(60))[0] for _ in range(8)]
        held = [m for m in range(1024) if m != free]
        for n, lease in enumerate(leases):  # etcd allows 128 operations per txn
            puts = [Put(prefix + b"%d" % m, b'{"owner":"other"}', lease) for m in held[n::8]]
            assert (await backend.txn([], puts)).succeeded
        last = IdGenerator(settings)
        late = IdGenerator(settings)
        async with open_supervisor([last.spec()]):
            assert last.machine_id == free
            with pytest.raises(ChildStartError) as info:
                async with open_supervisor([late.spec()]):
                    pass  # pragma: no cover
            assert isinstance(info.value.__cause__, MachineIdsExhausted)
            assert "all 1024 machine IDs" in str(info.value.__cause__)
            assert not late.ready
        for lease in leases:
            assert await backend.lease_revoke(lease)
        assert await backend.range(prefix + b"0", prefix + b":", keys_only=True) == []
    finally:
        await backend.aclose()


async def test_shutdown_frees_the_machine_id_at_once(etcd_url: str, etcd_key_prefix: str) -> None:
    settings = IdGenSettings(etcd=Dsn(etcd_url), key_prefix=etcd_key_prefix, lease_ttl=10.0)
    ids = IdGenerator(settings)
    async with open_supervisor([ids.spec()]):
        machine_id = ids.machine_id
        last = ids.next_id()
    backend = HttpEtcd(etcd_url)
    try:
        prefix = etcd_key_prefix.encode()
        keys = [kv.key for kv in await backend.range(prefix, prefix_end(prefix))]
        assert keys == [prefix + f"last/{machine_id}".encode()]
    finally:
        await backend.aclose()
    again = IdGenerator(settings)
    async with open_supervisor([again.spec()]):
        assert again.next_id() > last or again.machine_id != machine_id
