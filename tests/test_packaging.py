"""The distribution as users get it: ``python -m build`` makes the sdist and the wheel
(the wheel from the sdist, so the sdist is complete), ``twine check`` passes on both,
and the wheel installed in a fresh virtualenv runs examples/ten_line_service.py.

The fresh virtualenv gets the wheel with ``--no-deps`` and finds the dependencies in
this virtualenv's site-packages (a ``.pth`` line, so this checkout's own editable
install is NOT on its path): the test checks the wheel, not PyPI.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from email.parser import HeaderParser
from pathlib import Path

import pytest
import trio

import gochat_actors

ROOT = Path(__file__).resolve().parents[1]
VERSION = gochat_actors.__version__


def run(*args: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """sdist and wheel of this checkout, built once for the module."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: hatchling from this virtualenv (an isolated build downloads it)
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out)
    yield out
    shutil.rmtree(out, ignore_errors=True)


def one(dist: Path, pattern: str) -> Path:
    [path] = dist.glob(pattern)
    return path


def test_the_version_is_written_in_one_place() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r"^dynamic = \[\"version\"\]", pyproject, re.M)
    assert not re.search(r"^version\s*=", pyproject, re.M)
    assert 'path = "gochat_actors/_version.py"' in pyproject
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    released = re.findall(r"^## \[(\d[^\]]*)\]", changelog, re.M)
    assert released[0] == VERSION, "CHANGELOG.md's newest version is not __version__"


@pytest.mark.slow
def test_build_makes_an_sdist_and_a_wheel_that_twine_accepts(dist: Path) -> None:
    sdist = one(dist, f"gochat_actors-{VERSION}.tar.gz")
    wheel = one(dist, f"gochat_actors-{VERSION}-py3-none-any.whl")
    out = run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)
    assert out.count("PASSED") == 2, out

    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        info = f"gochat_actors-{VERSION}.dist-info"
        metadata = HeaderParser().parsestr(whl.read(f"{info}/METADATA").decode())
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
    assert {"gochat_actors/py.typed", "supervisors/py.typed", f"{info}/licenses/LICENSE"} <= names
    assert {"gochat_actors/__init__.py", "supervisors/__init__.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/")) or ".pyc" in n]
    assert metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.11"
    assert any(d.startswith("trio>=") for d in metadata.get_all("Requires-Dist", []))
    assert "gochat-actors = gochat_actors.cli:main" in entry_points
    assert "supervisors = supervisors.testing._plugin" in entry_points
    assert "gochat_actors = gochat_actors.testing._plugin" in entry_points

    with tarfile.open(sdist) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE", "PKG-INFO"} <= members
    assert "examples/ten_line_service.py" in members
    assert not [m for m in members if m.startswith(("tests/", "docs/", ".venv", "site/"))]


@pytest.mark.slow
async def test_the_wheel_in_a_fresh_venv_runs_the_ten_line_service(
    dist: Path, tmp_path: Path
) -> None:
    wheel = one(dist, "*.whl")
    venv = tmp_path / "venv"
    await trio.to_thread.run_sync(run, sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    install = ("-m", "pip", "--disable-pip-version-check", "--python", python, "install")
    await trio.to_thread.run_sync(run, sys.executable, *install, "--no-deps", "--no-index", wheel)
    site = Path(await trio.to_thread.run_sync(run, python, "-c", _PURELIB))
    deps = sysconfig.get_paths()["purelib"]  # a plain path line: its .pth files are NOT run
    await trio.Path(site / "gochat-test-deps.pth").write_text(deps + "\n")

    # (from tmp_path: python -c puts the working directory first on the path)
    where = await trio.to_thread.run_sync(lambda: run(python, "-c", _WHERE, cwd=tmp_path))
    assert where.split() == [VERSION, "True", "True"], where  # the wheel's copy, not ours

    example = tmp_path / "ten_line_service.py"
    shutil.copy(ROOT / "examples" / "ten_line_service.py", example)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GOCHAT_", "PYTHON"))},
        "GOCHAT_HTTP__PORT": "0",
        "GOCHAT_LOG__LEVEL": "error",
        "PYTHONNOUSERSITE": "1",
    }
    proc = await trio.lowlevel.open_process(
        [str(python), str(example)], cwd=tmp_path, stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    out = b""
    try:
        with trio.fail_after(60):
            while b"hello ann" not in out:
                chunk = await proc.stdout.receive_some()
                assert chunk, out
                out += chunk
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 128 + signal.SIGTERM  # a graceful stop
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
    assert b"here is an id: " in out


_PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'], end='')"
_WHERE = (
    "import sys, gochat_actors, supervisors; "
    "print(gochat_actors.__version__, "
    "gochat_actors.__file__.startswith(sys.prefix), supervisors.__file__.startswith(sys.prefix))"
)
