"""``supervisors.run``: trio.run with SIGINT/SIGTERM turned into a graceful stop."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import trio

from ._stopper import hard_stop, open_stopper
from ._supervisor import _collapsing

__all__ = ["FORCE_EXIT_AFTER", "run"]

T = TypeVar("T")

_DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)

FORCE_EXIT_AFTER = 1.0
"""Seconds the process has, after a second signal, before it exits by force."""


class _Signals:
    __slots__ = ("received",)

    def __init__(self) -> None:
        self.received: list[int] = []


def _force_exit(signum: int) -> None:
    """Exit the process now: a child ignored cancellation past a second signal."""
    try:
        sys.stderr.write(
            f"supervisors.run: forced exit after signal {signum} (a child ignored "
            "cancellation; its cleanup did not run)\n"
        )
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(128 + signum)


async def _signal_guard(
    main_scope: trio.CancelScope,
    signals: Iterable[int],
    seen: _Signals,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(*signals) as received:
        task_status.started()
        async for signum in received:
            seen.received.append(signum)
            if len(seen.received) == 1:
                main_scope.cancel()  # graceful: every supervisor stops in reverse order
                continue
            hard_stop()  # impatient: cut every bounded cleanup short now
            if len(seen.received) > 2:
                _force_exit(signum)
            with trio.move_on_after(FORCE_EXIT_AFTER):
                signum = await received.__anext__()  # a third one: no more waiting
            _force_exit(signum)  # still not done (main ends this task when it is)


async def _main(
    main: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    signals: tuple[int, ...],
    seen: _Signals,
) -> tuple[T | None, bool]:
    result: T | None = None
    with open_stopper():
        async with _collapsing(), trio.open_nursery() as nursery:
            with trio.CancelScope() as main_scope:
                await nursery.start(_signal_guard, main_scope, signals, seen)
                result = await main(*args)
            nursery.cancel_scope.cancel()
    return result, main_scope.cancel_called


def run(
    main: Callable[..., Awaitable[T]],
    *args: Any,
    signals: Iterable[int] = _DEFAULT_SIGNALS,
    **trio_options: Any,
) -> T | None:
    """Run ``main(*args)`` under trio; the first SIGINT/SIGTERM stops it gracefully.

    The first signal (of ``signals``, SIGINT and SIGTERM by default) cancels ``main``:
    every supervisor in it stops its children in reverse order within their budgets.
    Once that is done, ``run`` raises ``SystemExit(128 + signal)`` (130 after SIGINT,
    143 after SIGTERM: what shells and process managers expect of a process a signal
    ended). A second signal cuts every bounded cleanup (:func:`cleanup_scope`,
    :func:`to_thread`) short at once; if ``main`` has still not returned a second
    later (a child shields itself or swallows ``Cancelled``), or at a third signal,
    the process exits at once with ``os._exit(128 + signal)``. Returns ``main``'s
    result when no signal stopped it; an exception of ``main`` comes out as itself
    (not in an ``ExceptionGroup``). ``trio_options`` go to ``trio.run`` (e.g.
    ``clock=``).

    Example::

        async def main() -> None:
            async with open_supervisor(specs):
                await trio.sleep_forever()

        if __name__ == "__main__":
            supervisors.run(main)   # exits 130 on Ctrl-C, 143 on SIGTERM
    """
    seen = _Signals()
    result, cancelled = trio.run(_main, main, args, tuple(signals), seen, **trio_options)
    if cancelled and seen.received:
        raise SystemExit(128 + seen.received[0])
    return result
