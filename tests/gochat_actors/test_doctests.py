"""The ``>>>`` examples in docstrings are right."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "gochat_actors._dsn",
    "gochat_actors.config._sources",
    "gochat_actors.log._processors",
    "gochat_actors.log._trace",
    "gochat_actors.metrics._metrics",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0
