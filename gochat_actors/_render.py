"""Draw a supervision tree's ``snapshot()`` for a terminal with rich.

It lives here, not in :mod:`supervisors`, so that the runtime imports trio only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.tree import Tree

__all__ = ["render_tree"]

_STATE_STYLE = {
    "running": "green",
    "starting": "cyan",
    "restarting": "yellow",
    "stopping": "magenta",
    "stopped": "dim",
    "terminated": "dim",
    "failed": "bold red",
}
_HEALTH_STYLE = {"ok": "green", "degraded": "yellow", "failed": "red"}


def _label(node: dict[str, Any]) -> str:
    from rich.markup import escape

    state = node.get("state", "?")
    style = _STATE_STYLE.get(state, "white")
    parts = [
        f"[bold]{escape(str(node.get('id', '?')))}[/bold]",
        f"[dim]{node.get('kind', '')}[/dim]",
    ]
    parts.append(f"[{style}]{state}[/{style}]")
    restarts = node.get("restarts", 0)
    if restarts:
        parts.append(f"[yellow]↻{restarts}[/yellow]")
    health = node.get("health") or {}
    status = health.get("status", "ok")
    if status != "ok":
        hstyle = _HEALTH_STYLE.get(status, "white")
        reason = escape(str(health.get("reason", "")))
        parts.append(
            f"[{hstyle}]{status}[/{hstyle}]" + (f" [dim]({reason})[/dim]" if reason else "")
        )
    mailbox = node.get("mailbox")
    if mailbox:
        parts.append(
            f"[dim]mailbox {mailbox['depth']}/{mailbox['size']} peak {mailbox['peak']}[/dim]"
        )
    uptime = node.get("uptime")
    if uptime and state == "running":
        parts.append(f"[dim]up {uptime:.1f}s[/dim]")
    error = node.get("last_error")
    if error and state != "running":
        parts.append(f"[red]{escape(str(error))[:80]}[/red]")
    return "  ".join(parts)


def render_tree(snapshot: dict[str, Any]) -> Tree:
    """A ``rich.tree.Tree`` of a ``Supervisor.snapshot()``: colours for states and
    health, restart counts (``↻n``: how often that child was restarted; on the root,
    the sum over its direct children), mailboxes, and the uptime of running children
    (nested supervisors included).

    Example::

        from gochat_actors.cli import render_tree
        rich.print(render_tree(sup.snapshot()))
    """
    from rich.tree import Tree

    flags = []
    if "live" in snapshot:
        flags.append("[green]live[/green]" if snapshot["live"] else "[red]not live[/red]")
    if "ready" in snapshot:
        flags.append("[green]ready[/green]" if snapshot["ready"] else "[yellow]not ready[/yellow]")
    tree = Tree(_label(snapshot) + ("  " + " ".join(flags) if flags else ""))

    def add(parent: Tree, node: dict[str, Any]) -> None:
        for child in node.get("children", ()):
            add(parent.add(_label(child)), child)

    add(tree, snapshot)
    return tree
