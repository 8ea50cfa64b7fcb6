"""The pytest plugin (entry point ``supervisors``): ``supervisor`` and ``chaos`` fixtures.

Needs pytest-trio (``trio_mode = true``, or mark tests with ``@pytest.mark.trio``);
use pytest-trio's ``autojump_clock`` fixture to run timing rules in virtual time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from .._supervisor import Supervisor, open_supervisor
from ._chaos import ChaosMonkey

ChaosFactory = Callable[..., Awaitable[ChaosMonkey]]


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    """A running, empty root supervisor; add children with ``start_child``.

    Made for chaos: it tolerates 1000 restarts a second and restarts at once
    (``backoff=None``), so a test sees as many kills and restarts as possible.

    Example::

        async def test_it(supervisor):
            ref = await supervisor.start_child(actor_spec("c", Counter, 0))
    """
    async with open_supervisor(
        name="test", max_restarts=1000, max_seconds=1.0, backoff=None
    ) as sup:
        yield sup


@pytest.fixture
def chaos(supervisor: Supervisor) -> ChaosFactory:
    """``await chaos(rate, seed=..., include=..., exclude=...)`` starts a ChaosMonkey child
    in the ``supervisor`` fixture's tree and returns it.

    It may be called more than once in a test: the monkeys are the children ``chaos``,
    ``chaos-2``, ``chaos-3``... (or pass ``id=``), seeded 0, 1, 2... unless ``seed`` is
    given. A monkey never kills another one.

    Example::

        async def test_survives(supervisor, chaos, autojump_clock):
            monkey = await chaos(rate=5.0, seed=3)
    """
    started: list[ChaosMonkey] = []

    async def start(
        rate: float,
        *,
        seed: int | None = None,
        include: Sequence[str] = ("**",),
        exclude: Sequence[str] = (),
        id: str | None = None,
        **options: Any,
    ) -> ChaosMonkey:
        n = len(started)
        monkey = ChaosMonkey(
            rate, seed=n if seed is None else seed, include=include, exclude=exclude, **options
        )
        child_id = id if id is not None else ("chaos" if n == 0 else f"chaos-{n + 1}")
        result: ChaosMonkey = await supervisor.start_child(monkey.spec(child_id))
        started.append(monkey)
        return result

    return start
