"""The browser view of a supervision tree: one self-contained HTML page (nothing loaded
from elsewhere, every string escaped) that polls its own URL and redraws the tree in
place; without JavaScript it reloads itself instead."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["CONTENT_SECURITY_POLICY", "render_tree_html"]

_STATE_CLASSES = frozenset(
    {"starting", "running", "stopping", "restarting", "stopped", "terminated", "failed"}
)
_HEALTH_CLASSES = frozenset({"ok", "degraded", "failed"})

_STYLE = """
body { font: 14px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       margin: 1.5em; color: #222; background: #fafafa; }
body.stale #live { opacity: .45; }
h1 { font-size: 1.2em; margin: 0 0 .5em; }
table.tree { border-collapse: collapse; }
table.tree th { text-align: left; color: #555; font-weight: normal;
                border-bottom: 1px solid #ccc; padding: .2em .8em .2em 0; }
table.tree td { padding: .15em .8em .15em 0; vertical-align: top; white-space: nowrap; }
table.tree td.num { text-align: right; }
table.tree td.error { white-space: normal; max-width: 40em; }
.branch { color: #aaa; white-space: pre; }
.id { font-weight: bold; }
.kind, .uptime, .none { color: #888; }
.flag, .state, .health { padding: 0 .4em; border-radius: 3px; }
.yes { background: #d6f5d6; } .no { background: #f8d0d0; }
.state-running { background: #d6f5d6; } .state-starting { background: #d0ecf8; }
.state-restarting { background: #fbeec0; } .state-stopping { background: #ecd6f5; }
.state-stopped, .state-terminated, .state-unknown { background: #e6e6e6; }
.state-failed { background: #f8d0d0; font-weight: bold; }
.health-ok { color: #2a7a2a; }
.health-degraded { background: #fbeec0; } .health-failed { background: #f8d0d0; }
.error { color: #b00020; } .restarted { color: #a15c00; font-weight: bold; }
.full { color: #b00020; font-weight: bold; }
ul.reasons { color: #a15c00; margin: 0 0 .8em; }
footer { margin-top: 1.5em; color: #777; font-size: .9em; }
"""

# Polls the page itself (as HTML, so there is one renderer: this module) and swaps the
# parts that change; DOMParser runs no script, and every string in what it parses was
# escaped here. A failed poll greys the tree and says since when; polling goes on.
_SCRIPT = """
(() => {
  "use strict";
  const every = Number(document.body.dataset.refresh) * 1000;
  if (!(every > 0)) return;
  const status = document.getElementById("status");
  const source = new URL("tree.html?refresh=0", location.href);
  let failedSince = null;
  async function poll() {
    try {
      const response = await fetch(source, {cache: "no-store"});
      if (!response.ok) throw new Error("HTTP " + response.status);
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const id of ["flags", "live"]) {
        const fresh = page.getElementById(id);
        const old = document.getElementById(id);
        if (fresh && old) old.replaceWith(document.adoptNode(fresh));
      }
      failedSince = null;
      document.body.classList.remove("stale");
      status.textContent = "updated " + new Date().toLocaleTimeString() +
        " (every " + every / 1000 + " s)";
    } catch (error) {
      failedSince = failedSince || new Date();
      document.body.classList.add("stale");
      status.textContent = "not reachable since " + failedSince.toLocaleTimeString() +
        " (" + error.message + "); retrying every " + every / 1000 + " s";
    }
    setTimeout(poll, every);
  }
  setTimeout(poll, every);
})();
"""


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"script-src '{_sha256(_SCRIPT)}'; "
    f"style-src '{_sha256(_STYLE)}'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The ``Content-Security-Policy`` of the page: its own script and style (by hash) and
requests to its own origin, nothing else."""


def _text(value: Any) -> str:
    return escape(str(value), quote=True)


def _state_class(state: str) -> str:
    return f"state-{state}" if state in _STATE_CLASSES else "state-unknown"


_NONE = '<span class="none">-</span>'


def _mailbox(mailbox: Mapping[str, Any] | None) -> str:
    if not mailbox:
        return _NONE
    depth, size = mailbox.get("depth"), mailbox.get("size")
    css = ' class="full"' if depth is not None and depth == size else ""
    return f"<span{css}>{_text(depth)}/{_text(size)}</span> peak {_text(mailbox.get('peak'))}"


def _row(node: Mapping[str, Any], branch: str) -> str:
    state = str(node.get("state", "?"))
    restarts = node.get("restarts", 0) or 0
    health = node.get("health") or {}
    status = str(health.get("status", "ok"))
    health_css = f"health-{status}" if status in _HEALTH_CLASSES else "health-failed"
    reason = health.get("reason", "")
    uptime = node.get("uptime")
    error = node.get("last_error")
    mailbox = node.get("mailbox")
    depth = mailbox.get("depth") if mailbox else None
    attrs = (
        f'data-path="{_text(node.get("path", ""))}" data-state="{_text(state)}" '
        f'data-restarts="{_text(restarts)}" data-health="{_text(status)}"'
        + (f' data-mailbox="{_text(depth)}"' if depth is not None else "")
    )
    cells = [
        f'<span class="branch">{branch}</span><span class="id">{_text(node.get("id", "?"))}</span>',
        f'<span class="kind">{_text(node.get("kind", ""))}</span>',
        f'<span class="state {_state_class(state)}">{_text(state)}</span>',
        f'<span class="restarted">{_text(restarts)}</span>' if restarts else "0",
        f'<span class="health {health_css}">{_text(status)}</span>'
        + (f" {_text(reason)}" if reason else ""),
        _mailbox(mailbox),
        f'<span class="uptime">{float(uptime):.1f}s</span>'
        if uptime and state == "running"
        else _NONE,
        f'<span class="error">{_text(error)}</span>' if error else "",
    ]
    css = ["", "", "", ' class="num"', "", ' class="num"', ' class="num"', ' class="error"']
    tds = "".join(f"<td{c}>{cell}</td>" for c, cell in zip(css, cells, strict=True))
    return f'<tr class="node" {attrs}>{tds}</tr>'


def _rows(node: Mapping[str, Any], lasts: Sequence[bool] = ()) -> list[str]:
    """The node's row then its children's, each with the tree's branch lines."""
    branch = "".join("   " if last else "\u2502  " for last in lasts[:-1])
    if lasts:
        branch += "\u2514\u2500 " if lasts[-1] else "\u251c\u2500 "
    rows = [_row(node, branch)]
    children = list(node.get("children") or ())
    for i, child in enumerate(children):
        rows += _rows(child, [*lasts, i == len(children) - 1])
    return rows


_HEADINGS = ("child", "kind", "state", "restarts", "health", "mailbox", "uptime", "last error")


def render_tree_html(
    snapshot: Mapping[str, Any], *, refresh: float | None = 2.0, json_url: str = "/debug/tree"
) -> str:
    """A whole HTML page showing ``snapshot`` (a ``Supervisor.snapshot()``): one row per
    child with its state, restarts, health and mailbox depth. Every ``refresh`` seconds
    the page fetches itself again and redraws the tree in place (without JavaScript it
    reloads); ``None``: a still page.

    Every string from the snapshot is HTML-escaped; the page loads nothing else (serve
    it with :data:`CONTENT_SECURITY_POLICY`).

    Example::

        page = render_tree_html(sup.snapshot(), refresh=2.0)
    """
    flags = []
    for key, yes, no in (("live", "live", "not live"), ("ready", "ready", "not ready")):
        if key in snapshot:
            ok = bool(snapshot[key])
            flags.append(f'<span class="flag {"yes" if ok else "no"}">{yes if ok else no}</span>')
    reasons = "".join(f"<li>{_text(r)}</li>" for r in snapshot.get("reasons", ()))
    every = max(1, round(refresh)) if refresh is not None else None
    head_refresh = (
        f'<noscript><meta http-equiv="refresh" content="{every}"></noscript>' if every else ""
    )
    headings = "".join(f"<th>{h}</th>" for h in _HEADINGS)
    status = f"refreshes every {every} s" if every else "a still page"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"{head_refresh}"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>supervision tree</title>"
        f"<style>{_STYLE}</style></head>"
        + (f'<body data-refresh="{every}">' if every else "<body>")
        + f'<h1>supervision tree <span id="flags">{" ".join(flags)}</span></h1>'
        '<div id="live">'
        + (f'<ul class="reasons">{reasons}</ul>' if reasons else "")
        + f'<table class="tree"><thead><tr>{headings}</tr></thead>'
        f"<tbody>{''.join(_rows(snapshot))}</tbody></table></div>"
        f'<footer><span id="status">{status}</span>; '
        f'<a href="{_text(json_url)}">JSON</a></footer>'
        + (f"<script>{_SCRIPT}</script>" if every else "")
        + "</body></html>\n"
    )
