"""The browser view of a supervision tree: one self-contained HTML page (no script, no
external file), refreshed by the browser itself, every string escaped."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

__all__ = ["render_tree_html"]

_STATE_CLASSES = frozenset(
    {"starting", "running", "stopping", "restarting", "stopped", "terminated", "failed"}
)
_HEALTH_CLASSES = frozenset({"ok", "degraded", "failed"})

_STYLE = """
body { font: 14px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.2em; margin: 0 0 .5em; }
ul.tree, ul.tree ul { list-style: none; margin: 0; padding-left: 1.4em;
                      border-left: 1px dotted #bbb; }
ul.tree { border-left: none; padding-left: 0; }
li { margin: .15em 0; }
.id { font-weight: bold; }
.kind, .uptime, .meta { color: #777; }
.flag, .state, .health { padding: 0 .4em; border-radius: 3px; }
.yes { background: #d6f5d6; } .no { background: #f8d0d0; }
.state-running { background: #d6f5d6; } .state-starting { background: #d0ecf8; }
.state-restarting { background: #fbeec0; } .state-stopping { background: #ecd6f5; }
.state-stopped, .state-terminated, .state-unknown { background: #e6e6e6; }
.state-failed { background: #f8d0d0; font-weight: bold; }
.health-degraded { background: #fbeec0; } .health-failed { background: #f8d0d0; }
.error { color: #b00020; } .restarts { color: #a15c00; }
ul.reasons { color: #a15c00; }
footer { margin-top: 1.5em; color: #777; font-size: .9em; }
"""


def _text(value: Any) -> str:
    return escape(str(value), quote=True)


def _state_class(state: str) -> str:
    return f"state-{state}" if state in _STATE_CLASSES else "state-unknown"


def _node(node: Mapping[str, Any]) -> str:
    state = str(node.get("state", "?"))
    parts = [
        f'<span class="id">{_text(node.get("id", "?"))}</span>',
        f'<span class="kind">{_text(node.get("kind", ""))}</span>',
        f'<span class="state {_state_class(state)}">{_text(state)}</span>',
    ]
    restarts = node.get("restarts", 0)
    if restarts:
        parts.append(f'<span class="restarts">&#8635;{_text(restarts)}</span>')
    health = node.get("health") or {}
    status = str(health.get("status", "ok"))
    if status != "ok":
        css = f"health-{status}" if status in _HEALTH_CLASSES else "health-failed"
        reason = health.get("reason", "")
        detail = f" ({_text(reason)})" if reason else ""
        parts.append(f'<span class="health {css}">{_text(status)}{detail}</span>')
    mailbox = node.get("mailbox")
    if mailbox:
        parts.append(
            f'<span class="meta">mailbox {_text(mailbox.get("depth"))}/'
            f"{_text(mailbox.get('size'))} peak {_text(mailbox.get('peak'))}</span>"
        )
    uptime = node.get("uptime")
    if uptime and state == "running":
        parts.append(f'<span class="uptime">up {_text(f"{float(uptime):.1f}")}s</span>')
    error = node.get("last_error")
    if error and state != "running":
        parts.append(f'<span class="error">{_text(error)}</span>')
    children = node.get("children") or ()
    inner = "".join(_node(child) for child in children)
    sub = f"<ul>{inner}</ul>" if inner else ""
    attrs = f'data-path="{_text(node.get("path", ""))}" data-state="{_text(state)}"'
    return f'<li class="node" {attrs}>{" ".join(parts)}{sub}</li>'


def render_tree_html(
    snapshot: Mapping[str, Any], *, refresh: float | None = 2.0, json_url: str = "/debug/tree"
) -> str:
    """A whole HTML page showing ``snapshot`` (a ``Supervisor.snapshot()``), refreshed by
    the browser every ``refresh`` seconds (``None``: never).

    Every string from the snapshot is HTML-escaped; the page loads nothing else.

    Example::

        page = render_tree_html(sup.snapshot(), refresh=2.0)
    """
    flags = []
    for key, yes, no in (("live", "live", "not live"), ("ready", "ready", "not ready")):
        if key in snapshot:
            ok = bool(snapshot[key])
            flags.append(f'<span class="flag {"yes" if ok else "no"}">{yes if ok else no}</span>')
    reasons = "".join(f"<li>{_text(r)}</li>" for r in snapshot.get("reasons", ()))
    meta_refresh = (
        f'<meta http-equiv="refresh" content="{max(1, round(refresh))}">'
        if refresh is not None
        else ""
    )
    every = f"refreshes every {max(1, round(refresh))} s; " if refresh is not None else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"{meta_refresh}"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>supervision tree</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>supervision tree {' '.join(flags)}</h1>"
        + (f'<ul class="reasons">{reasons}</ul>' if reasons else "")
        + f'<ul class="tree">{_node(snapshot)}</ul>'
        f'<footer>{every}<a href="{_text(json_url)}">JSON</a></footer>'
        "</body></html>\n"
    )
