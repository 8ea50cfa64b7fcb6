"""docs/db.md: the quick start runs as written and prints what it says.

The page's other blocks run (or are fragments) by tests/gochat_actors/test_doctests.py.
"""

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
