"""docs/db.md: the quick start runs as written and prints what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "db.md"


def test_quick_start_runs() -> None:
    text = DOC.read_text()
    quick_start = text.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", quick_start, re.DOTALL)
    assert code is not None
    result = subprocess.run(
        [sys.executable, "-c", code.group(1)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=DOC.parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert "primary ['general', 'random']" in result.stdout
    assert "integrity error (19): UNIQUE constraint failed: rooms.name" in result.stdout


FRAGMENT = "<!-- fragment"  # put just before a block that needs more around it to run


def _blocks() -> list[tuple[int, str, bool]]:
    """Every ```python block of docs/db.md: (line, code, marked as a fragment)."""
    lines = DOC.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            end = lines.index("```", i + 1)
            before = next((line for line in reversed(lines[:start]) if line.strip()), "")
            code = "\n".join(lines[start + 1 : end]) + "\n"
            blocks.append((start + 1, code, before.strip().startswith(FRAGMENT)))
            i = end
        i += 1
    return blocks


def test_every_block_runs_as_shown_unless_marked_a_fragment() -> None:
    failures = []
    for line, code, fragment in _blocks():
        if fragment:
            compile(code, f"docs/db.md:{line}", "exec")  # still valid Python
            continue
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=DOC.parents[1],
        )
        if result.returncode != 0:
            failures.append(f"docs/db.md:{line}: {result.stderr[-600:]}")
    assert failures == []
