"""``gochat-actors check-config``: the effective settings and where each came from."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from ._console import console

if TYPE_CHECKING:
    from .._exceptions import SettingsProblem

__all__ = ["check_config"]


def check_config(file: Path | None, *, as_json: bool = False) -> int:
    """Load the settings (``file``, else ``$GOCHAT_CONFIG``, then the environment) and
    print every effective value, masked, with its source and environment variable; or
    every problem found (those of :func:`~gochat_actors.config.check_runtime` too, such
    as a log file in a missing directory). Returns the exit code: 0, or 1 on problems.

    Example::

        exit_code = check_config(Path("chat.toml"))
    """
    from ..config import (
        CONFIG_ENV_VAR,
        SettingsError,
        check_runtime,
        explain_settings,
        load_settings,
    )

    try:
        settings = load_settings(file)
    except SettingsError as exc:
        return _report(exc.problems, as_json=as_json)
    problems = check_runtime(settings)
    if problems:
        return _report(problems, as_json=as_json)

    rows = explain_settings(settings)
    if as_json:
        doc = [
            {"path": r.path, "value": r.value, "source": str(r.source), "env": r.env} for r in rows
        ]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return 0
    env_file = os.environ.get(CONFIG_ENV_VAR, "")
    named = (
        str(file)
        if file is not None
        else (f"${CONFIG_ENV_VAR}={env_file}" if env_file else "no file")
    )
    table = Table("setting", "value", "source", "environment", title_justify="left")
    table.title = f"effective settings ({named}; secrets masked)"
    for row in rows:
        source = Text(str(row.source), style="dim" if row.source.kind == "default" else "bold")
        table.add_row(Text(row.path), Text(json.dumps(row.value)), source, Text(row.env))
    console().print(table)
    return 0


def _report(problems: Sequence[SettingsProblem], *, as_json: bool) -> int:
    if as_json:
        doc = [{"path": p.path, "source": p.source, "message": p.message} for p in problems]
        sys.stdout.write(json.dumps({"problems": doc}, indent=2) + "\n")
        return 1
    count = len(problems)
    table = Table("setting", "source", "problem", title_justify="left")
    table.title = f"{count} problem{'s' if count != 1 else ''} in settings"
    for problem in problems:
        table.add_row(Text(problem.path), Text(problem.source), Text(problem.message))
    console(sys.stderr).print(table)
    return 1
