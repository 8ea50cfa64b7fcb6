"""What import-linter cannot say in its contracts: supervisors imports trio alone.

``lint-imports`` (in ``make test``) checks the layers, the private modules and the
circles (``[tool.importlinter]`` in pyproject.toml); its forbidden contract can only
list packages supervisors must not import. This test states the rule the other way
round: besides the standard library, the runtime imports trio (and outcome, trio's
own), and its pytest plugin pytest.
"""

from __future__ import annotations

import sys

import grimp

ALLOWED = {"trio", "outcome"}
ALLOWED_IN_TESTING = ALLOWED | {"pytest"}


def _imported_packages() -> dict[str, set[str]]:
    graph = grimp.build_graph(
        "supervisors", include_external_packages=True, exclude_type_checking_imports=True
    )
    found: dict[str, set[str]] = {}
    for module in graph.modules:
        if not module.startswith("supervisors"):
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            top = imported.partition(".")[0]
            if top != "supervisors" and top not in sys.stdlib_module_names:
                found.setdefault(top, set()).add(module)
    return found


def test_supervisors_imports_trio_alone() -> None:
    found = _imported_packages()
    runtime = {
        top
        for top, modules in found.items()
        if any(not m.startswith("supervisors.testing") for m in modules)
    }
    assert runtime <= ALLOWED, {top: sorted(found[top]) for top in runtime - ALLOWED}
    assert set(found) <= ALLOWED_IN_TESTING, sorted(set(found) - ALLOWED_IN_TESTING)
