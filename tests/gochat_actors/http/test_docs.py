"""The example of docs/http.md runs as written and prints what the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "http.md"


def test_the_page_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    [code] = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    exec(compile(code, str(DOC), "exec"), {"__name__": "docs_http"})
    printed = capsys.readouterr().out.splitlines()
    expected = re.findall(r"^\s*# (\{'ready'.*|\['metrics'.*)$", code, re.M)
    assert len(expected) == 2
    for line in expected:
        assert line in printed
