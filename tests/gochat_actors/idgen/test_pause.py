"""etcd paused (``kill -STOP``) for longer than the TTL, on a private etcd: generators
stop issuing before their lease could expire, and after ``kill -CONT`` go on with no
duplicate."""

from __future__ import annotations

import itertools
import time

import pytest
import trio

from gochat_actors import Dsn, MachineIdLost
from gochat_actors.idgen import IdGenerator, IdGenSettings
from supervisors import open_supervisor
from tests._private import PrivateServer

TTL, MARGIN = 2.0, 0.5  # 2 s is etcd's smallest lease TTL


async def test_paused_etcd_stops_issuing_before_the_lease_could_expire(
    private_etcd: PrivateServer,
) -> None:
    url = private_etcd.url
    settings = IdGenSettings(etcd=Dsn(url), key_prefix="/pause/", lease_ttl=TTL, margin=MARGIN)
    gens = [IdGenerator(settings) for _ in range(3)]
    issued: list[list[int]] = [[] for _ in gens]
    last_ok = [0.0 for _ in gens]  # when the last successful call *started*
    async with open_supervisor([g.spec(f"g{i}") for i, g in enumerate(gens)]):

        async def hammer(stop: trio.Event) -> None:
            while not stop.is_set():
                for i, g in enumerate(gens):
                    started = time.monotonic()
                    try:
                        issued[i] += g.next_ids(50)
                    except MachineIdLost:
                        continue
                    last_ok[i] = started
                await trio.sleep(0.002)

        async with trio.open_nursery() as nursery:
            stop = trio.Event()
            nursery.start_soon(hammer, stop)
            await trio.sleep(1.0)
            paused_at = time.monotonic()
            private_etcd.pause()
            # each generator's deadline: its last acknowledged keepalive's send time
            # + TTL - margin; etcd cannot expire the lease before that + margin
            deadlines = [g.statistics().valid_until for g in gens]
            await trio.sleep(TTL + 2.0)
            stopped = [not g.ready for g in gens]
            during_pause = list(last_ok)
            with pytest.raises(MachineIdLost):
                gens[0].next_id()
            private_etcd.resume()
            for g in gens:
                await g.wait_ready(timeout=20.0)
            resumed = [len(batch) for batch in issued]
            await trio.sleep(0.5)
            stop.set()
    assert all(stopped)
    for i in range(len(gens)):
        assert deadlines[i] <= paused_at + TTL - MARGIN
        assert during_pause[i] < deadlines[i], (during_pause[i] - paused_at, deadlines[i])
        assert len(issued[i]) > resumed[i]  # it issued again after kill -CONT
        assert issued[i] == sorted(set(issued[i]))
    every = list(itertools.chain.from_iterable(issued))
    assert len(set(every)) == len(every)
