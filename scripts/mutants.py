"""Mutation testing of the safety-critical modules, one module at a time (``make mutants``).

    .venv/bin/python scripts/mutants.py [MODULE ...]      # no MODULE: every one, in order
    .venv/bin/python scripts/mutants.py --list

mutmut 3 reads its settings from ``[tool.mutmut]`` in ``pyproject.toml`` in the directory
it runs in, and keeps its work (mutated copies, stats, results) in ``mutants/`` there. One
settings table cannot give each module its own tests, so each module gets its own
directory ``mutants/<slug>/``: links to the sources and the tests, and a copy of
``pyproject.toml`` whose ``[tool.mutmut]`` is the repository's with ``only_mutate`` and the
test selection of that module. Its results stay there (``cd mutants/<slug> && mutmut
results``, ``mutmut show NAME``) and a rerun retests only what changed.

mutmut runs one worker (the machine has two cores shared with other work) and the
command is run through ``/work/bin/tslot`` when that exists (the shared test slots).
Servers must be up: the lock, idgen, mq and db selections include their server tests,
with ``CI=1`` so a missing server fails the clean run instead of skipping tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "mutants"
TSLOT = Path("/work/bin/tslot")

# module -> (the files mutated, the tests that check them). Only fast tests: a module's
# run is minutes, not hours. Server tests are included where they are the relevant ones.
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "supervisors/_supervisor.py": (["supervisors/_supervisor.py"], ["tests/supervisors"]),
    "supervisors/_child.py": (["supervisors/_child.py"], ["tests/supervisors"]),
    "gochat_actors/lock": (
        ["gochat_actors/lock/_locks.py", "gochat_actors/lock/_redis.py"],
        ["tests/gochat_actors/lock"],
    ),
    "gochat_actors/idgen": (
        ["gochat_actors/idgen/_generator.py", "gochat_actors/idgen/_keeper.py"],
        [
            "tests/gochat_actors/idgen/test_generator.py",
            "tests/gochat_actors/idgen/test_keeper.py",
            "tests/gochat_actors/idgen/test_pause.py",
            "tests/gochat_actors/idgen/test_real_etcd.py",
            "tests/gochat_actors/idgen/test_docs.py",
        ],
    ),
    "gochat_actors/mq/_consumer.py": (
        ["gochat_actors/mq/_consumer.py"],
        [
            "tests/gochat_actors/mq/test_consumer.py",
            "tests/gochat_actors/mq/test_kafka.py",
            "tests/gochat_actors/mq/test_kafka_regressions.py",
        ],
    ),
    "gochat_actors/db/_session.py": (
        ["gochat_actors/db/_session.py"],
        [
            "tests/gochat_actors/db/test_conformance.py",
            "tests/gochat_actors/db/test_manager.py",
            "tests/gochat_actors/db/test_errors.py",
            "tests/gochat_actors/db/test_replicas.py",
        ],
    ),
    "supervisors/_actor.py": (["supervisors/_actor.py"], ["tests/supervisors"]),
}

LINKED = ["supervisors", "gochat_actors", "tests", "examples", "docs", "README.md", "mkdocs.yml"]


def slug(module: str) -> str:
    return module.removesuffix(".py").replace("/", "_")


def pyproject_for(files: list[str], tests: list[str]) -> str:
    """The repository's pyproject.toml with ``[tool.mutmut]`` narrowed to one module."""
    text = (ROOT / "pyproject.toml").read_text()
    settings = dict(tomllib.loads(text)["tool"]["mutmut"])
    settings["only_mutate"] = files
    settings["pytest_add_cli_args_test_selection"] = tests
    kept, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = line.strip() == "[tool.mutmut]"
        if not skipping:
            kept.append(line)
    # json's strings, numbers, booleans and lists are TOML values too.
    table = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join([*kept, "", "[tool.mutmut]", *table, ""])


def prepare(module: str) -> Path:
    files, tests = MODULES[module]
    where = WORK / slug(module)
    where.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = where / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name)
    wanted = pyproject_for(files, tests)
    config = where / "pyproject.toml"
    if not config.exists() or config.read_text() != wanted:
        config.write_text(wanted)
    return where


def run(module: str) -> int:
    where = prepare(module)
    mutmut = Path(sys.executable).with_name("mutmut")
    command = [str(mutmut), "run", "--max-children", "1"]
    if TSLOT.exists():
        command = [str(TSLOT), *command]
    print(f"== {module}: {' '.join(command)}  (in {where.relative_to(ROOT)})", flush=True)
    started = time.monotonic()
    env = {**os.environ, "CI": "1"}
    code = subprocess.call(command, cwd=where, env=env)
    minutes = (time.monotonic() - started) / 60
    print(f"== {module}: mutmut exited {code} after {minutes:.1f} min", flush=True)
    subprocess.call([str(mutmut), "results"], cwd=where)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--list", action="store_true", help="list the modules and their tests")
    parser.add_argument("--clean", action="store_true", help="forget a module's earlier results")
    args = parser.parse_args()
    if args.list:
        for module, (files, tests) in MODULES.items():
            print(f"{module}\n  mutates {' '.join(files)}\n  tests   {' '.join(tests)}")
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    worst = 0
    for module in args.modules or list(MODULES):
        if args.clean:
            shutil.rmtree(WORK / slug(module), ignore_errors=True)
        worst = max(worst, run(module))
    return worst


if __name__ == "__main__":
    sys.exit(main())
