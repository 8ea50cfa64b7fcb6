"""The pytest plugin (entry point ``gochat_actors``): the ``gochat_service`` fixture.

Needs pytest-trio (``trio_mode = true``, or mark tests with ``@pytest.mark.trio``);
ask for pytest-trio's ``autojump_clock`` too to run the service in virtual time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ._service import TestService, open_test_service


@pytest.fixture
async def gochat_service() -> AsyncIterator[TestService]:
    """A running :func:`~gochat_actors.testing.open_test_service` on its defaults: every
    component in memory, ``gochat_service.faults`` at hand.

    Example::

        async def test_cache_pause(gochat_service, autojump_clock):
            gochat_service.faults.cache.pause()
    """
    async with open_test_service() as service:
        yield service
