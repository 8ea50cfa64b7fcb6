"""``supervisors`` depends on trio and the standard library only: no rich, no pytest
(except the pytest plugin, which only pytest loads)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "supervisors"
ALLOWED = {"trio", "outcome", "supervisors"}  # outcome: trio's own result type
PLUGIN = PACKAGE / "testing" / "_plugin.py"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_module_imports_anything_but_trio_and_the_stdlib() -> None:
    # render_tree (rich) lived here; it moved to gochat_actors.cli.
    bad = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        allowed = ALLOWED | ({"pytest"} if path == PLUGIN else set())
        extra = imported_roots(path) - allowed - set(sys.stdlib_module_names) - {"__future__"}
        if extra:
            bad[str(path.relative_to(PACKAGE))] = sorted(extra)
    assert bad == {}


def test_importing_it_loads_nothing_else() -> None:
    code = (
        "import sys\n"
        "def third_party():\n"
        "    return {n.split('.')[0] for n in sys.modules} - set(sys.stdlib_module_names)\n"
        "import trio\n"
        "before = third_party()\n"
        "import supervisors, supervisors.testing\n"
        "print(sorted(third_party() - before))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "['supervisors']"
