"""Consoles for the commands: a wide, uncoloured page when not on a terminal (pipes,
files, tests), so tables are not folded at 80 columns."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console

__all__ = ["console"]


def console(stream: TextIO | None = None) -> Console:
    """A rich Console on ``stream`` (stdout by default).

    Example::

        console(sys.stderr).print("[red]error[/red]")
    """
    stream = stream if stream is not None else sys.stdout
    if stream.isatty():
        return Console(file=stream)
    return Console(file=stream, width=200, no_color=True, highlight=False)
