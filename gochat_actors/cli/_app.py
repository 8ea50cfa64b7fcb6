"""The typer app behind ``gochat-actors``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="gochat-actors",
    help="Supervised trio actors for a chat backend: check settings, watch a live tree.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("check-config")
def check_config_command(
    file: Annotated[
        Path | None,
        typer.Argument(help="TOML settings file (default: $GOCHAT_CONFIG, if set)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the effective settings (secrets masked) and where each value came from.

    On bad settings, list every problem and exit with code 1.
    """
    from ._check import check_config

    raise typer.Exit(check_config(file, as_json=as_json))


@app.command("tree")
def tree_command(
    url: Annotated[
        str, typer.Option(help="Base URL of the HTTP endpoints (or its /debug/tree).")
    ] = "http://127.0.0.1:9464",
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between redraws.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print the tree once and exit.")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="HTTP timeout, seconds.")] = 5.0,
) -> None:
    """Poll /debug/tree and redraw the live supervision tree (Ctrl-C to quit)."""
    from ._tree import watch_tree

    raise typer.Exit(watch_tree(url, interval=interval, once=once, timeout=timeout))


def _demo_epilog() -> str:
    from ..demo import ROWS

    lines = ["The summary's rows:"] + [f"{row}: {text}." for row, text in ROWS.items()]
    return "\n\n".join(lines)


def _help(ctx: typer.Context, value: bool) -> None:
    if value:
        typer.echo(ctx.get_help())
        raise typer.Exit()


@app.command("demo", add_help_option=False, epilog=_demo_epilog())
def demo_command(
    config: Annotated[
        Path | None,
        typer.Option(help="TOML settings file.", show_default="the embedded defaults"),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Stop after this many seconds; print a summary.",
            show_default="run until Ctrl-C, no summary",
        ),
    ] = None,
    chaos: Annotated[
        float | None,
        typer.Option(
            min=0.0, help="Kill a random actor this often (per second).", show_default="off"
        ),
    ] = None,
    live: Annotated[
        bool, typer.Option("--live/--no-live", help="Draw the live tree.", metavar="")
    ] = True,
    rate: Annotated[float, typer.Option(min=0.1, help="Messages sent per second.")] = 200.0,
    rooms: Annotated[int, typer.Option(min=1, help="Chat rooms.")] = 8,
    seed: Annotated[int | None, typer.Option(help="Seed of the rooms and the chaos.")] = None,
    instance: Annotated[str | None, typer.Option(help="Name of this instance.")] = None,
    sent_file: Annotated[
        Path | None, typer.Option(help="Append each acknowledged message id to this file.")
    ] = None,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the summary as JSON to this file.")
    ] = None,
    _help_option: Annotated[
        bool,
        typer.Option(
            "--help",
            is_eager=True,
            expose_value=False,
            callback=_help,
            metavar="",
            help="Show this message and exit.",
        ),
    ] = False,
) -> None:
    """Run the demo chat backend: embedded defaults, or real servers with --config.

    The verdict is ok when nothing was lost or duplicated and the system kept up.
    When it cannot start (invalid settings, a busy HTTP port...), print one line and
    exit with code 1 (with the traceback at [log] level debug).
    """
    from ..demo import main as demo_main
    from ..service import exit_on_startup_error

    try:
        code = demo_main(
            config=config,
            duration=duration,
            chaos=chaos,
            live=live,
            rate=rate,
            rooms=rooms,
            seed=seed,
            instance=instance,
            sent_file=sent_file,
            summary_json=summary_json,
        )
    except Exception as exc:  # an ExceptionGroup too
        exit_on_startup_error(exc, name="gochat-actors demo", debug=_debug_level(config))
        raise
    raise typer.Exit(code)


def _debug_level(config: Path | None) -> bool:
    """Whether the settings the demo ran with ask for debug logs (then tracebacks show)."""
    from ..config import load_settings

    try:
        return load_settings(config).log.level == "debug"
    except Exception:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """The ``gochat-actors`` console script; returns the exit code.

    Example::

        main(["check-config", "chat.toml"])   # 0, or 1 with every problem listed
    """
    try:
        app(args=list(argv) if argv is not None else None, prog_name="gochat-actors")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
