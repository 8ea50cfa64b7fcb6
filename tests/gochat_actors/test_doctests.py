"""The ``>>>`` examples in docstrings are right, and the code blocks of docs/*.md run."""

from __future__ import annotations

import ast
import doctest
import importlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MODULES = [
    "gochat_actors._dsn",
    "gochat_actors.config._source",
    "gochat_actors.config._sources",
    "gochat_actors.log._processors",
    "gochat_actors.log._trace",
    "gochat_actors.metrics._metrics",
    "gochat_actors._w3c",
    "gochat_actors._tls",
    "gochat_actors._redis_cluster",
    "gochat_actors.lock._redis",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0


# -- the code blocks of docs/*.md ------------------------------------------------------
#
# Every ```python block of the docs runs as shown, or says it is a fragment with a first
# line `# fragment...` (a piece of a larger program: the names it uses come from the
# text around it). A block with a title (```toml title="chat.toml"```) is a file the
# page's examples read: it is written to the working directory of the page's blocks.
# Blocks run one per subprocess, in a fresh directory, with no GOCHAT_* variable, and
# with the real servers of the test machine at 127.0.0.1 (docs examples point there).
# A block runs as a module, not as __main__: a service's `if __name__ == "__main__":
# gochat_actors.run(main)` would run until stopped (the programs in examples/, which
# such blocks show, are run to the end by tests/test_examples.py). So that code which
# does not run (function bodies) is checked too, ruff must find no undefined name.

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)(?P<attrs>[^\n`]*)$")
TITLE = re.compile(r'title="(?P<title>[^"]+)"')
FRAGMENT = "# fragment"


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    title: str | None
    code: str

    @property
    def fragment(self) -> bool:
        return self.code.lstrip().startswith(FRAGMENT)


def doc_blocks(page: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, start = match["indent"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        title = TITLE.search(match["attrs"])
        code = "\n".join(body) + "\n"
        blocks.append(
            Block(page.name, start + 1, match["lang"], title["title"] if title else None, code)
        )
        i += 1
    return blocks


def runnable_blocks() -> list[Any]:
    params = []
    for page in sorted(DOCS.glob("*.md")):
        for block in doc_blocks(page):
            if block.lang != "python" or block.fragment:
                continue
            params.append(pytest.param(block, id=f"{block.page}:{block.line}"))
    return params


def test_the_doc_block_parser_finds_blocks_files_and_fragments(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        '```toml title="a.toml"\n[x]\n```\n\n- item:\n\n  ```python\n  # fragment\n'
        "  x = 1\n  ```\n\n```python\nprint(1)\n```\n",
        encoding="utf-8",
    )
    toml, fragment, runnable = doc_blocks(page)
    assert (toml.lang, toml.title, toml.code) == ("toml", "a.toml", "[x]\n")
    assert fragment.fragment
    assert fragment.code == "# fragment\nx = 1\n"
    assert not runnable.fragment
    assert runnable.line == 12


@pytest.mark.parametrize("block", runnable_blocks())
def test_docs_code_block_runs_as_shown(block: Block, tmp_path: Path) -> None:
    for other in doc_blocks(DOCS / block.page):
        if other.title is not None:
            (tmp_path / other.title).write_text(other.code, encoding="utf-8")
    script = tmp_path / "block.py"
    script.write_text(block.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GOCHAT_")}
    env["PYTHONPATH"] = str(DOCS.parent)
    run_as_module = f"import runpy; runpy.run_path({str(script)!r}, run_name='docs_block')"
    result = subprocess.run(
        [sys.executable, "-c", run_as_module],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"docs/{block.page} line {block.line} fails as shown:\n{result.stderr[-3000:]}"
    )
    ruff = Path(sys.executable).with_name("ruff")
    lint = subprocess.run(
        [str(ruff), "check", "--isolated", "--no-cache", "--select", "F821", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert lint.returncode == 0, f"docs/{block.page} line {block.line}:\n{lint.stdout}"


def test_every_fragment_is_still_valid_python() -> None:
    # A fragment is not run, but it must parse (top-level await allowed: fragments show
    # the inside of an async function), so a typo in one is still caught.
    failures = []
    for page in sorted(DOCS.glob("*.md")):
        for block in doc_blocks(page):
            if block.lang == "python" and block.fragment:
                try:
                    compile(
                        block.code,
                        f"{page.name}:{block.line}",
                        "exec",
                        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                    )
                except SyntaxError as exc:
                    failures.append(f"docs/{page.name}:{block.line}: {exc}")
    assert failures == []
