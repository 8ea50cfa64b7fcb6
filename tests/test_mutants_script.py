"""scripts/mutants.py: the work directory of ``make mutants`` leaves the build alone."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutants_script", ROOT / "scripts/mutants.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_module_work_directory_holds_copies_not_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: links to supervisors/ under mutants/ made hatchling skip the real
    # supervisors/ (it walks each real directory once): the sdist and the wheel lost the
    # package after a `make mutants`.
    script = load_script()
    monkeypatch.setattr(script, "WORK", tmp_path)
    where = script.prepare("supervisors/_child.py")
    assert [p for p in where.rglob("*") if p.is_symlink()] == []
    assert (where / "supervisors/_child.py").read_bytes() == (
        ROOT / "supervisors/_child.py"
    ).read_bytes()
    settings = tomllib.loads((where / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert settings["only_mutate"] == ["supervisors/_child.py"]
    assert settings["pytest_add_cli_args_test_selection"][0] == "tests/supervisors"
