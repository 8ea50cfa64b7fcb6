"""The example of docs/testing.md "Test your service in twenty lines" runs, as a user's
test module, under pytest (issue 21 point 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.gochat_actors.test_doctests import DOCS, doc_blocks

HEADING = "## Test your service in twenty lines"


def _example() -> str:
    page = DOCS / "testing.md"
    start = page.read_text(encoding="utf-8").splitlines().index(HEADING) + 1
    block = next(b for b in doc_blocks(page) if b.line > start and b.lang == "python")
    return block.code


def test_the_twenty_lines_example_passes_as_a_users_test(tmp_path: Path) -> None:
    module = tmp_path / "test_users_service.py"
    module.write_text(_example(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GOCHAT_")}
    env["PYTHONPATH"] = str(DOCS.parent)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(module),
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "trio_mode=true",
            "-W",
            "error",
            "--rootdir",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
