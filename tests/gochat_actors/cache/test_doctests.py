"""The ``>>>`` examples in the cache and lock modules are right."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name",
    ["gochat_actors._checks", "gochat_actors._labels", "gochat_actors.lock._protocol"],
)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0
