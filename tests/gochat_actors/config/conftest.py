"""Every config test starts with no GOCHAT_* variable in the environment."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_gochat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GOCHAT_"):
            monkeypatch.delenv(name)
