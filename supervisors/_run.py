"""``supervisors.run``: trio.run with SIGINT/SIGTERM turned into a graceful stop."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import trio

__all__ = ["run"]

T = TypeVar("T")

_DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _signal_guard(
    main_scope: trio.CancelScope,
    signals: Iterable[int],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    from ._stopper import hard_stop

    with trio.open_signal_receiver(*signals) as received:
        task_status.started()
        count = 0
        async for _signum in received:
            count += 1
            if count == 1:
                main_scope.cancel()  # graceful: every supervisor stops in reverse order
            else:
                hard_stop()  # impatient: cut every bounded cleanup short now


async def _main(
    main: Callable[..., Awaitable[T]], args: tuple[Any, ...], signals: tuple[int, ...]
) -> T | None:
    from ._stopper import open_stopper

    result: T | None = None
    with open_stopper():
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as main_scope:
                await nursery.start(_signal_guard, main_scope, signals)
                result = await main(*args)
            nursery.cancel_scope.cancel()
    return result


def run(
    main: Callable[..., Awaitable[T]],
    *args: Any,
    signals: Iterable[int] = _DEFAULT_SIGNALS,
    **trio_options: Any,
) -> T | None:
    """Run ``main(*args)`` under trio; the first SIGINT/SIGTERM stops it gracefully.

    The first signal cancels ``main``: every supervisor in it stops its children in
    reverse order within their budgets. A second signal cuts every bounded cleanup
    (:func:`cleanup_scope`, :func:`to_thread`) short at once, so the stop completes as
    fast as the children allow (trio cannot interrupt code that shields itself).
    Returns ``main``'s result, or ``None`` when a signal stopped it. ``trio_options``
    go to ``trio.run`` (e.g. ``clock=``).

    Example::

        async def main() -> None:
            async with open_supervisor(specs):
                await trio.sleep_forever()

        if __name__ == "__main__":
            supervisors.run(main)
    """
    return trio.run(_main, main, args, tuple(signals), **trio_options)
