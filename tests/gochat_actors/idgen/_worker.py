"""One OS process of the many-processes test: hold a machine ID, then generate IDs.

``python -m tests.gochat_actors.idgen._worker ETCD_URL KEY_PREFIX OUT_FILE COUNT``
prints ``ready <machine_id>``, waits for a line on stdin, writes COUNT IDs to OUT_FILE
(native int64), prints ``done``, and frees its machine ID on exit.
"""

from __future__ import annotations

import array
import sys

import trio

from gochat_actors import Dsn, log
from gochat_actors.idgen import IdGenerator, IdGenSettings
from supervisors import open_supervisor


async def main(url: str, prefix: str, out: str, count: int) -> None:
    log.configure(log.LogSettings(outputs=("stderr",), level="warning"), service="worker")
    ids = IdGenerator(IdGenSettings(etcd=Dsn(url), key_prefix=prefix, lease_ttl=10.0, margin=2.0))
    async with open_supervisor([ids.spec()]):
        sys.stdout.write(f"ready {ids.machine_id}\n")
        sys.stdout.flush()
        await trio.to_thread.run_sync(sys.stdin.readline)
        got = array.array("q")
        half = count // 2
        for _ in range(half):
            got.append(ids.next_id())
        while len(got) < count:
            got.extend(ids.next_ids(min(4096, count - len(got))))
            await trio.lowlevel.checkpoint()
        await trio.Path(out).write_bytes(got.tobytes())
        sys.stdout.write("done\n")
        sys.stdout.flush()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
