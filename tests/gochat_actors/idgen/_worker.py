"""One OS process of the many-processes test: hold a machine ID, then generate IDs.

:func:`work` runs in a child process (``multiprocessing``, forkserver: children fork
from one process that imported everything once). Over ``conn`` it sends
``("ready", machine_id)``, waits for ``"go"``, writes ``count`` IDs to ``out``
(native int64) and sends ``("done", count)``; it frees its machine ID on exit.
"""

from __future__ import annotations

import array
from multiprocessing.connection import Connection

import trio

from gochat_actors import Dsn, log
from gochat_actors.idgen import IdGenerator, IdGenSettings
from supervisors import open_supervisor


async def _main(url: str, prefix: str, out: str, count: int, conn: Connection) -> None:
    log.configure(log.LogSettings(outputs=("stderr",), level="warning"), service="worker")
    settings = IdGenSettings(etcd=Dsn(url), key_prefix=prefix, lease_ttl=10.0, margin=2.0)
    ids = IdGenerator(settings)
    async with open_supervisor([ids.spec()]):
        conn.send(("ready", ids.machine_id))
        assert await trio.to_thread.run_sync(conn.recv) == "go"
        got = array.array("q")
        half = count // 2
        for _ in range(half):
            got.append(ids.next_id())
        while len(got) < count:
            got.extend(ids.next_ids(min(4096, count - len(got))))
            await trio.lowlevel.checkpoint()
        await trio.Path(out).write_bytes(got.tobytes())
        conn.send(("done", len(got)))


def work(url: str, prefix: str, out: str, count: int, conn: Connection) -> None:
    """The child process's target."""
    trio.run(_main, url, prefix, out, count, conn)
