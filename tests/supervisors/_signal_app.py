"""A tiny service for the signal tests: a tree run by ``supervisors.run``.

``python -m tests.supervisors._signal_app [slow|stuck]``: prints ``ready`` once the tree
is up; on SIGTERM it stops gracefully and prints the stop order. With ``slow``, child
"b" needs 60 s of (bounded) cleanup, so only a second signal ends it quickly. With
``stuck``, child "b" shields its cleanup from cancellation: only a forced exit ends it.
"""

from __future__ import annotations

import sys

import trio

import supervisors
from supervisors import ChildSpec, open_supervisor

SLOW = "slow" in sys.argv[1:]
STUCK = "stuck" in sys.argv[1:]


async def child(
    name: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    task_status.started()
    try:
        await trio.sleep_forever()
    finally:
        try:
            if SLOW and name == "b":
                with supervisors.cleanup_scope():
                    await trio.sleep(60)
            if STUCK and name == "b":
                with trio.CancelScope(shield=True):
                    await trio.sleep(60)
        finally:
            print(f"stopped {name}", flush=True)


async def main() -> None:
    specs = [ChildSpec(n, child, args=(n,), shutdown=120.0) for n in "abc"]
    sup: supervisors.Supervisor | None = None
    try:
        async with open_supervisor(specs) as sup:
            print("ready", flush=True)
            try:
                await trio.sleep_forever()
            finally:
                print("stopping", flush=True)
    finally:
        report = sup.shutdown_report if sup is not None else None
        overstayed = [o.path for o in report.overstayed] if report else None
        print(f"overstayed={overstayed}", flush=True)


if __name__ == "__main__":
    try:
        supervisors.run(main)
    finally:
        print("exited", flush=True)
