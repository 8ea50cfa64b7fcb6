"""docs/config.md documents every setting with its real default and environment variable."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gochat_actors.config import Settings, explain_settings

DOC = Path(__file__).resolve().parents[3] / "docs" / "config.md"
ROW = re.compile(r"^\| `(?P<key>[a-z_]+)` \| `(?P<default>.*?)` \| `(?P<env>GOCHAT_[A-Z_]+)` \|")
SECTION = re.compile(r"^### `\[(?P<section>[a-z]+)\]`")


def documented() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    section = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if match := SECTION.match(line):
            section = match["section"]
        elif (match := ROW.match(line)) and section:
            rows[f"{section}.{match['key']}"] = (match["default"], match["env"])
    return rows


def test_every_setting_is_documented_with_its_default_and_env_name() -> None:
    rows = documented()
    expected = {row.path: (json.dumps(row.value), row.env) for row in explain_settings(Settings())}
    assert rows == expected
