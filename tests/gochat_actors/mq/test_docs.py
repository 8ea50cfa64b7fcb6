"""docs/mq.md's quick start runs as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "mq.md"


def test_quick_start_runs_as_written() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert blocks, "docs/mq.md has no python example"
    namespace: dict[str, object] = {"__name__": "docs_mq"}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    assert namespace["stored"] == [b"hello", b"bye"]
