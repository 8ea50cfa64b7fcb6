"""The gochat_actors subpackages re-export exactly their ``__all__``; imports stay light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from tests.test_public_api import public_names

SUBPACKAGES = [
    "gochat_actors.cache",
    "gochat_actors.config",
    "gochat_actors.db",
    "gochat_actors.http",
    "gochat_actors.idgen",
    "gochat_actors.lock",
    "gochat_actors.log",
    "gochat_actors.metrics",
    "gochat_actors.mq",
    "gochat_actors.service",
    "gochat_actors.tracing",
]


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_all_matches_public_names(package: str) -> None:
    module = importlib.import_module(package)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported))
    assert not [name for name in exported if not hasattr(module, name)]
    assert sorted(public_names(module) - set(exported)) == []


def test_settings_class_of_each_component_is_exported_by_config() -> None:
    config = importlib.import_module("gochat_actors.config")
    for package in SUBPACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            if name.endswith("Settings"):
                assert getattr(config, name) is getattr(module, name)


def test_importing_the_package_imports_no_optional_driver_nor_asyncio_bridge() -> None:
    code = (
        "import sys\n"
        f"import gochat_actors, {', '.join(SUBPACKAGES)}\n"
        "drivers = {'aiomysql', 'aiokafka', 'trio_asyncio', 'sqlalchemy', 'coredis',"
        " 'opentelemetry'}\n"
        "bad = drivers & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
