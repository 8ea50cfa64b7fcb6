"""Mutation testing of the safety-critical modules, one module at a time (``make mutants``).

    .venv/bin/python scripts/mutants.py [MODULE ...]      # no MODULE: every one, in order
    .venv/bin/python scripts/mutants.py --list

mutmut 3 reads its settings from ``[tool.mutmut]`` in ``pyproject.toml`` in the directory
it runs in, and keeps its work (mutated copies, stats, results) in ``mutants/`` there. One
settings table cannot give each module its own tests, so each module gets its own
directory ``mutants/<slug>/``: copies of the sources and the tests, and a copy of
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
import difflib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import tokenize
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "mutants"
TSLOT = Path("/work/bin/tslot")

# module -> (the files mutated, the tests that check them). Only fast tests: a module's
# run is minutes, not hours. Server tests are included where they are the relevant ones.
# test_imports checks that supervisors imports only trio and the stdlib: the mutated copy
# imports mutmut's trampoline, so it fails whatever the mutant.
SUPERVISORS_TESTS = ["tests/supervisors", "--ignore=tests/supervisors/test_imports.py"]
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "supervisors/_supervisor.py": (["supervisors/_supervisor.py"], SUPERVISORS_TESTS),
    "supervisors/_child.py": (["supervisors/_child.py"], SUPERVISORS_TESTS),
    "gochat_actors/lock": (
        ["gochat_actors/lock/_locks.py", "gochat_actors/lock/_redis.py"],
        # The eight-process test runs the locks in child processes, where mutmut records
        # nothing (no mutant is ever tested with it); its 25 s near the 30 s limit and its
        # 2 s connect budget for eight interpreters under the stats run's tracing made
        # the clean run fail.
        [
            "tests/gochat_actors/lock",
            # locks over rediss:// (which TLS files go with which URL) are tested there
            "tests/gochat_actors/cache/test_redis_tls.py",
            "--deselect",
            "tests/gochat_actors/lock/test_locks_redis.py"
            "::test_eight_processes_never_hold_the_lock_at_once",
        ],
    ),
    "gochat_actors/idgen": (
        ["gochat_actors/idgen/_generator.py", "gochat_actors/idgen/_keeper.py"],
        [
            "tests/gochat_actors/idgen/test_generator.py",
            "tests/gochat_actors/idgen/test_keeper.py",
            "tests/gochat_actors/idgen/test_pause.py",
            "tests/gochat_actors/idgen/test_real_etcd.py",
            "tests/gochat_actors/idgen/test_docs.py",
            "tests/gochat_actors/idgen/test_mutation_kills.py",
            # child processes again (mutmut records nothing there); over 30 s when traced
            "--deselect",
            "tests/gochat_actors/idgen/test_real_etcd.py"
            "::test_many_processes_distinct_machine_ids_and_no_duplicate",
        ],
    ),
    # The consumer's commit path: a partition's position (what is committed) moves in
    # the session's dispatch, workers, drains and settles; commits run periodically, on
    # revoke and on stop. _consumer.py is mostly configuration (only its _run's final
    # commit is on the path, and that is Session.commit). Only the commit-path functions
    # are mutated (FUNCTIONS below); the memory broker's consumer tests under virtual time
    # check them, with the two order-and-commit conformance checks on Kafka (Tansu).
    "gochat_actors/mq/consumer": (
        ["gochat_actors/mq/_session.py"],
        [
            "tests/gochat_actors/mq/test_consumer.py",
            "tests/gochat_actors/mq/test_batch_consumer.py",
            "tests/gochat_actors/mq/test_batch_consumer_breaks.py",
            "tests/gochat_actors/mq/test_consumer_handoff_breaks.py",
            "tests/gochat_actors/mq/test_consumer_conformance.py::test_order_and_commit_on_memory",
            "tests/gochat_actors/mq/test_consumer_conformance.py"
            "::test_poison_to_dead_letter_on_memory",
            "tests/gochat_actors/mq/test_consumer_conformance.py::test_kills_on_memory",
            "tests/gochat_actors/mq/test_consumer_conformance.py::test_order_and_commit_on_kafka",
            "tests/gochat_actors/mq/test_mutation_kills.py",
        ],
    ),
    "gochat_actors/db/_session.py": (
        ["gochat_actors/db/_session.py"],
        # MemoryDB and SQLite under autojump_clock: the conformance checks on MariaDB are
        # the same checks (19 tests, 16 s a run, the pair's 5 s start in each); one
        # MariaDB test stays, a cancelled transaction on the real server.
        [
            "tests/gochat_actors/db/test_conformance.py",
            "tests/gochat_actors/db/test_manager.py",
            "tests/gochat_actors/db/test_errors.py",
            "tests/gochat_actors/db/test_replicas.py",
            "tests/gochat_actors/db/test_hotpath_breaks.py",
            "tests/gochat_actors/db/test_mutation_kills.py",
            "tests/gochat_actors/db/test_mariadb.py"
            "::test_cancelled_transaction_leaves_nothing_committed",
            "-k",
            "not test_mariadb_primary_and_replica and not test_mariadb_cancel_at_every_step",
        ],
    ),
    "supervisors/_actor.py": (["supervisors/_actor.py"], SUPERVISORS_TESTS),
}

# module -> the mutants `mutmut run` tests (fnmatch patterns of mutant names), for a
# module whose file is bigger than its safety-critical part (a run of the order of
# 40 min). Without an entry: all.
_MQ_SESSION = "gochat_actors.mq._session.xǁSessionǁ"
_DB_SESSION = "gochat_actors.db._session."
FUNCTIONS: dict[str, list[str]] = {
    "gochat_actors/mq/consumer": [
        f"{_MQ_SESSION}{name}__mutmut_*"
        for name in (
            "revoke",
            "_part",
            "_dispatch_batch",
            "run_workers",
            "work",
            "_drain",
            "_drain_batch",
            "_settle",
            "_finished",
            "tick",
            "commit",
        )
    ],
    "gochat_actors/db/_session.py": [
        # open, commit, rollback, release, drop: the transaction path
        *(
            f"{_DB_SESSION}xǁDBSessionǁ{name}__mutmut_*"
            for name in (
                "_committed",
                "_commit_seen",
                "_end",
                "_release",
                "_drop",
                "_detach",
                "_attach",
                "_open_on",
                "_live",
                "_note_write",
                "_io",
                "_call",
                "_failover",  # each call, a writer's commit, replica failover
            )
        ),
        *(
            f"{_DB_SESSION}x_{name}__mutmut_*"
            for name in ("run_unit", "_unit", "_then_commit", "deadline_of", "timed_out")
        ),
    ],
}

IGNORED_TOKENS = {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT}
COPIED = ["supervisors", "gochat_actors", "tests", "examples", "docs", "README.md", "mkdocs.yml"]


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
    # Copies, not links: hatchling walks each real directory once, so a link to
    # supervisors/ under mutants/ made it skip the real one (sdist and wheel without it).
    # copy2 keeps modification times: mutmut regenerates only the files that changed.
    for name in COPIED:
        source, copy = ROOT / name, where / name
        if copy.is_symlink() or copy.is_file():
            copy.unlink()
        elif copy.is_dir():
            shutil.rmtree(copy)
        if source.is_dir():
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy)
    wanted = pyproject_for(files, tests)
    config = where / "pyproject.toml"
    if not config.exists() or config.read_text() != wanted:
        config.write_text(wanted)
    return where


def run(module: str) -> int:
    where = prepare(module)
    mutmut = Path(sys.executable).with_name("mutmut")
    command = [str(mutmut), "run", "--max-children", "1", *FUNCTIONS.get(module, [])]
    if TSLOT.exists():
        command = [str(TSLOT), *command]
    shown = command[: len(command) - len(FUNCTIONS.get(module, []))]
    print(f"== {module}: {' '.join(shown)}  (in {where.relative_to(ROOT)})", flush=True)
    started = time.monotonic()
    env = {**os.environ, "CI": "1"}
    code = subprocess.call(command, cwd=where, env=env)
    minutes = (time.monotonic() - started) / 60
    print(f"== {module}: mutmut exited {code} after {minutes:.1f} min", flush=True)
    subprocess.call([str(mutmut), "results"], cwd=where)
    return code


def _changed_tokens(diff: str) -> tuple[list[str], list[str]]:
    """The tokens a mutant's diff removes and adds (positions where the lines differ)."""
    old = [line[1:] for line in diff.splitlines() if line[:1] == "-" and line[:3] != "---"]
    new = [line[1:] for line in diff.splitlines() if line[:1] == "+" and line[:3] != "+++"]

    def tokens(lines: list[str]) -> list[str]:
        try:
            found = tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline)
            return [t.string for t in found if t.type not in IGNORED_TOKENS]
        except (tokenize.TokenError, IndentationError, SyntaxError):
            return lines

    a, b = tokens(old), tokens(new)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    removed, added = [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            removed += a[i1:i2]
            added += b[j1:j2]
    return removed, added


def kind_of(diff: str) -> str:
    """``text`` when the mutant changes only string literals (to other text or None)."""
    removed, added = _changed_tokens(diff)
    is_text = all(t[-1:] in "'\"" for t in removed) and all(
        t[-1:] in "'\"" or t == "None" for t in added
    )
    return "text" if removed and is_text else "logic"


def report(module: str) -> int:
    """Write mutants/<slug>/survivors.md: the counts, and each surviving mutant's diff."""
    where = prepare(module)
    sys.path.insert(0, str(where))
    os.chdir(where)
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    counts: dict[str, int] = {}
    rows = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, code in data.exit_code_by_key.items():
            status = status_by_exit_code[code]
            counts[status] = counts.get(status, 0) + 1
            if status in ("survived", "timeout", "suspicious", "no tests"):
                diff = get_diff_for_mutant(name, path=path)
                rows.append((status, kind_of(diff) if status == "survived" else "", name, diff))
    lines = [f"# {module}", "", ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), ""]
    for status, kind, name, diff in rows:
        changed = [x for x in diff.splitlines() if x[:1] in "+-" and x[:3] not in ("---", "+++")]
        lines += [f"## {status} {kind} {name}", "```diff", *changed, "```", ""]
    out = where / "survivors.md"
    out.write_text("\n".join(lines))
    # For docs/mutants.md: the survivors by kind, then by function, with their numbers.
    grouped: dict[tuple[str, str], list[str]] = {}
    for status, kind, name, _ in rows:
        function, _, number = name.rpartition("__mutmut_")
        function = (
            function.rpartition(".")[2]
            .removeprefix("x_")
            .removeprefix("x")
            .replace("ǁ", ".")
            .strip(".")
        )
        grouped.setdefault((f"{status} {kind}".strip(), function), []).append(number)
    summary = [f"### {module}", ""]
    for (what, function), numbers in sorted(grouped.items()):
        summary.append(f"- {what}: `{function}` {', '.join(numbers)}")
    (where / "survivors-summary.md").write_text("\n".join(summary) + "\n")
    texts = sum(1 for r in rows if r[1] == "text")
    print(f"{module}: {counts}; {texts} of the survivors change text only; see {out}")
    return 0


def check(module: str, mutants: list[str], tests: list[str]) -> int:
    """Run ``tests`` (the working tree's current versions) against each of ``mutants`` of
    ``module`` in turn, all in one test slot: how a new test is seen to fail with a
    mutant and pass without (the mutant ``""``). Needs the module's mutants generated by
    a run. Exit status 0 when the tests pass without a mutant and fail with each one."""
    copies = WORK / slug(module) / "mutants"
    if not copies.exists():
        raise SystemExit(f"no mutants for {module} yet: run `make mutants MODULE={module}`")
    if TSLOT.exists() and not os.environ.get("MUTANTS_IN_SLOT"):
        again = [sys.executable, __file__, module, "--tests", *tests, "--check", *mutants]
        env = {**os.environ, "MUTANTS_IN_SLOT": "1"}
        return subprocess.call([str(TSLOT), *again], env=env)
    shutil.copytree(ROOT / "tests", copies / "tests", dirs_exist_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    wrong = 0
    for mutant in mutants:
        env = {**os.environ, "CI": "1", "MUTANT_UNDER_TEST": mutant}
        result = subprocess.run(command, cwd=copies, env=env, capture_output=True, text=True)
        last = (result.stdout.strip().splitlines() or ["?"])[-1]
        verdict = ("passes" if result.returncode == 0 else "FAILS") + f": {last}"
        expected = (result.returncode == 0) == (mutant == "")
        wrong += not expected
        print(f"{'ok ' if expected else 'BAD'} {mutant or '(no mutant)'}: tests {verdict}")
    return 1 if wrong else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--list", action="store_true", help="list the modules and their tests")
    parser.add_argument(
        "--report", action="store_true", help="write each module's survivors to survivors.md"
    )
    parser.add_argument("--report-one", help=argparse.SUPPRESS)
    parser.add_argument(
        "--check",
        nargs="+",
        metavar="MUTANT",
        help="run the --tests against each MUTANT of the one MODULE given ('' = no mutant)",
    )
    parser.add_argument("--tests", nargs="+", default=[], help="the tests for --check")
    parser.add_argument("--clean", action="store_true", help="forget a module's earlier results")
    args = parser.parse_args()
    if args.list:
        for module, (files, tests) in MODULES.items():
            print(f"{module}\n  mutates {' '.join(files)}\n  tests   {' '.join(tests)}")
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    if args.check:
        if len(args.modules) != 1:
            parser.error("--check needs exactly one MODULE")
        return check(args.modules[0], args.check, args.tests)
    if args.report:
        for module in args.modules or list(MODULES):
            if (WORK / slug(module) / "mutants").exists():
                subprocess.check_call([sys.executable, __file__, "--report-one", module])
        return 0
    if args.report_one:
        return report(args.report_one)
    worst = 0
    for module in args.modules or list(MODULES):
        if args.clean:
            shutil.rmtree(WORK / slug(module), ignore_errors=True)
        worst = max(worst, run(module))
    return worst


if __name__ == "__main__":
    sys.exit(main())
