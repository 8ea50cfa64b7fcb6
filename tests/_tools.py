"""The command-line tools some tests drive (promtool, chromium): find them, or skip
(fail under CI). `scripts/services tools` installs them from Debian packages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Final

import pytest

from tests._servers import in_ci

PACKAGES: Final = {"promtool": "prometheus", "chromium": "chromium"}


def require_tool(name: str) -> str:
    """The path of ``name`` on PATH; skip the test when it is missing, under CI fail it.

    >>> require_tool("promtool").endswith("promtool")  # doctest: +SKIP
    True
    """
    path = shutil.which(name)
    if path is not None:
        return path
    reason = (
        f"{name} is not installed (Debian package {PACKAGES.get(name, name)}); "
        "install it with `scripts/services tools`"
    )
    if in_ci():
        pytest.fail(f"{reason} [CI is set: a missing tool is a failure]", pytrace=False)
    pytest.skip(reason)


def promtool(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``promtool *args`` (skipping the test when promtool is missing); its output as
    text, whatever the exit code."""
    binary = require_tool("promtool")
    return subprocess.run(
        [binary, *map(str, args)],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
