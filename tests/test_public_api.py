"""Each public package re-exports its public names with an exact ``__all__``.

Add a public subpackage to ``PUBLIC_PACKAGES`` when it gets its own ``__init__``
exports (e.g. ``"gochat_actors.testing"``).
"""

from __future__ import annotations
import __future__

import importlib
import types

import pytest

PUBLIC_PACKAGES: list[str] = [
    "supervisors",
    "supervisors.testing",
    "gochat_actors",
    "gochat_actors.cache",
    "gochat_actors.cli",
    "gochat_actors.db",
    "gochat_actors.http",
    "gochat_actors.idgen",
    "gochat_actors.lock",
    "gochat_actors.mq",
    "gochat_actors.testing",
    "gochat_actors.tracing",
]


def public_names(module: types.ModuleType) -> set[str]:
    """Names bound in ``module`` that look public: no underscore, not a module."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and not isinstance(value, __future__._Feature)  # `from __future__ import annotations`
    }


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_all_is_a_list_of_unique_strings(package: str) -> None:
    """``__all__`` exists, holds only strings, and names each export once."""
    module = importlib.import_module(package)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list | tuple), f"{package} has no __all__ list"
    assert all(isinstance(name, str) for name in exported)
    duplicates = sorted({n for n in exported if list(exported).count(n) > 1})
    assert not duplicates, f"{package}.__all__ repeats {duplicates}"


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_all_names_exist(package: str) -> None:
    """Every name in ``__all__`` is really there."""
    module = importlib.import_module(package)
    missing = sorted(name for name in module.__all__ if not hasattr(module, name))
    assert not missing, f"{package}.__all__ names what does not exist: {missing}"


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_public_names_are_in_all(package: str) -> None:
    """Every public name bound in the package ``__init__`` is listed in ``__all__``."""
    module = importlib.import_module(package)
    unlisted = sorted(public_names(module) - set(module.__all__))
    assert not unlisted, (
        f"{package} binds public names missing from __all__: {unlisted} "
        "(add them to __all__, or rename them with a leading underscore)"
    )


def test_drift_is_detected() -> None:
    """The checks above catch both kinds of drift on a made-up package."""
    fake = types.ModuleType("fake")
    for name, value in [
        ("Exported", object()),
        ("Forgotten", object()),
        ("_private", object()),
        ("submodule", types.ModuleType("fake.submodule")),
        ("__all__", ["Exported", "Ghost"]),
    ]:
        setattr(fake, name, value)
    assert public_names(fake) == {"Exported", "Forgotten"}
    assert sorted(public_names(fake) - set(fake.__all__)) == ["Forgotten"]
    assert [n for n in fake.__all__ if not hasattr(fake, n)] == ["Ghost"]
