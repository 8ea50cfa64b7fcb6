"""``scripts/services tools``: installs promtool and chromium only when missing, and
rejects a tool it does not know."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "services"


def services(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "SERVICES_STATE_DIR": str(state),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("tool", ["promtool", "chromium"])
def test_tools_leaves_an_installed_tool_alone(tool: str, tmp_path: Path) -> None:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (the script would install it)")
    done = services("tools", tool, state=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"[services] {tool}: {path}"


def test_tools_rejects_an_unknown_tool(tmp_path: Path) -> None:
    done = services("tools", "grafana", state=tmp_path)
    assert done.returncode == 2
    assert "unknown tool: grafana" in done.stderr
