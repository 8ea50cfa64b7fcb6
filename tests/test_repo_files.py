"""The repository's own machinery: docker-compose.yml, the CI workflow, `.ci/run`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent

# compose service -> the host port it must publish (same as the local defaults).
COMPOSE_PORTS = {
    "mariadb": 3306,
    "mariadb-replica": 3307,
    "redis": 6379,
    "kafka": 9092,
    "etcd": 2379,
}


def load_yaml(name: str) -> dict[Any, Any]:
    """Parse ``name`` (relative to the repository root) as one YAML mapping."""
    data = yaml.safe_load((ROOT / name).read_text())
    assert isinstance(data, dict), f"{name} is not a YAML mapping"
    return data


def host_ports(service: dict[str, Any]) -> set[int]:
    """Host ports a compose service publishes (``"127.0.0.1:3306:3306"`` -> 3306)."""
    ports: set[int] = set()
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        ports.add(int(parts[-2]))
    return ports


@pytest.mark.parametrize(("service", "port"), sorted(COMPOSE_PORTS.items()))
def test_compose_service_publishes_its_port(service: str, port: int) -> None:
    """Each server is there, on its default port, on the loopback address only."""
    services = load_yaml("docker-compose.yml")["services"]
    assert service in services
    assert port in host_ports(services[service])
    assert all(str(p).startswith("127.0.0.1:") for p in services[service]["ports"])


def test_compose_replica_replicates_from_the_primary() -> None:
    """The primary writes a binlog and the replica follows it, read-only."""
    services = load_yaml("docker-compose.yml")["services"]
    primary, replica = services["mariadb"], services["mariadb-replica"]
    assert any("--log-bin" in arg for arg in primary["command"])
    assert primary["environment"]["MARIADB_DATABASE"] == "test"
    assert replica["environment"]["MARIADB_MASTER_HOST"] == "mariadb"
    user = primary["environment"]["MARIADB_REPLICATION_USER"]
    assert replica["environment"]["MARIADB_REPLICATION_USER"] == user
    assert "--read-only=1" in replica["command"]
    server_ids = {a for a in primary["command"] + replica["command"] if "server-id" in a}
    assert server_ids == {"--server-id=1", "--server-id=2"}


def test_compose_kafka_is_single_node_kraft() -> None:
    """Kafka runs without ZooKeeper and advertises the loopback listener."""
    env = load_yaml("docker-compose.yml")["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "PLAINTEXT://127.0.0.1:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_workflow_runs_make_test_with_the_servers() -> None:
    """The GitHub workflow starts the compose servers, then runs the README's command."""
    workflow = load_yaml(".github/workflows/ci.yml")
    triggers = workflow["on"] if "on" in workflow else workflow[True]  # YAML 1.1: on = True
    assert "push" in triggers
    assert "pull_request" in triggers
    (job,) = workflow["jobs"].values()
    assert job["env"]["CI"] == "true"
    runs = [step.get("run", "") for step in job["steps"]]
    assert "make test" in runs
    compose = next(i for i, r in enumerate(runs) if r.startswith("docker compose up"))
    assert compose < runs.index("make test")


def test_ci_run_calls_make_test() -> None:
    """`.ci/run` runs exactly the README's test command, with CI=1 exported."""
    script = (ROOT / ".ci" / "run").read_text()
    commands = [
        line.strip()
        for line in script.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))
    ]
    assert commands == ["export CI=1", "exec make test"]
    assert "make test" in (ROOT / "README.md").read_text()


def test_ci_run_exports_ci_even_when_the_runner_forgets(tmp_path: Path) -> None:
    """Regression (issue 28): with CI unset, a missing server made tests skip silently."""
    fake = tmp_path / "make"
    fake.write_text('#!/bin/sh\necho "CI=${CI-unset} $*"\n', encoding="utf-8")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = f"{tmp_path}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [str(ROOT / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CI=1 test"


def test_mkdocs_nav_lists_every_page() -> None:
    """Every page in docs/ is in the mkdocs nav, and the nav names no missing page."""
    config = load_yaml("mkdocs.yml")

    def pages(node: Any) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in pages(item)]
        if isinstance(node, dict):
            return [p for value in node.values() for p in pages(value)]
        return []

    in_nav = set(pages(config["nav"]))
    on_disk = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert in_nav == on_disk


def test_the_workflow_tests_exactly_the_pythons_the_classifiers_name() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "Programming Language :: Python :: "
    named = [c.removeprefix(prefix) for c in project["classifiers"] if c.startswith(prefix + "3.")]
    (job,) = load_yaml(".github/workflows/ci.yml")["jobs"].values()
    matrix = job["strategy"]["matrix"]["python-version"]
    assert matrix == named == ["3.11", "3.12", "3.13", "3.14"]
    assert project["requires-python"] == f">={named[0]}" == ">=3.11"
    # Each job is its own interpreter: make test's second pass on 3.13 is off there.
    assert job["env"]["ALSO_PYTHON"] == ""


def _pytest_also(python: str, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "MAKEFLAGS", "MAKELEVEL")}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        ["make", "--no-print-directory", "pytest-also", f"ALSO_PYTHON={python}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_make_test_can_run_pytest_again_on_a_second_python_and_ci_fails_without_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    # On by default: `make test` (and so .ci/run) runs pytest on 3.11 and on 3.13.
    assert "ALSO_PYTHON ?= 3.13\n" in makefile
    test_recipe = makefile.split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    assert test_recipe.rstrip().endswith("$(MAKE) --no-print-directory pytest-also")
    # The second pass is pytest only: lint, types and docs do not depend on the interpreter.
    also_recipe = makefile.split("\npytest-also:", 1)[1].split("\n\n", 1)[0]
    assert also_recipe.rstrip().endswith("GOCHAT_BRIDGE_TUNING=$(ALSO_TUNING) $(ALSO_BIN)/pytest")
    assert "ALSO_TUNING ?= off\n" in makefile  # the second pass proves the tuning optional
    assert not any(tool in also_recipe for tool in ("ruff", "mypy", "lint-imports", "mkdocs"))
    missing = _pytest_also("3.99", "1")
    assert missing.returncode != 0
    assert "no python3.99 (CI is set: a failure)" in missing.stderr
    skipped = _pytest_also("3.99", None)
    assert skipped.returncode == 0, skipped.stderr
    assert "no python3.99 on PATH nor under ~/.pyenv/versions: skipped" in skipped.stdout
