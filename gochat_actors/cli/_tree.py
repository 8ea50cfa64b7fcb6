"""``gochat-actors tree``: poll ``/debug/tree`` and redraw the live tree in the terminal."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from .._dsn import mask_urls
from ._console import console

__all__ = ["TreeUnavailable", "fetch_tree", "tree_url", "watch_tree"]


class TreeUnavailable(Exception):
    """The tree could not be fetched; the message says why (never the response body, nor
    the URL's password)."""


def tree_url(url: str) -> str:
    """The ``/debug/tree`` URL of a base URL (or of that URL itself).

    Example::

        >>> tree_url("http://127.0.0.1:9464/")
        'http://127.0.0.1:9464/debug/tree'
    """
    url = url.rstrip("/")
    return url if url.endswith("/debug/tree") else f"{url}/debug/tree"


def fetch_tree(url: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """GET the JSON snapshot at ``url`` (a ``/debug/tree`` URL).

    Raises :class:`TreeUnavailable` when the server cannot be reached, answers with an
    error status, or sends something that is not a snapshot.

    Example::

        snapshot = fetch_tree(tree_url("http://127.0.0.1:9464"))
    """
    import httpx

    shown = mask_urls(url)  # the endpoints may sit behind a proxy with basic auth
    try:
        response = httpx.get(url, headers={"accept": "application/json"}, timeout=timeout)
    except httpx.HTTPError as exc:
        why = mask_urls(str(exc) or type(exc).__name__)
        raise TreeUnavailable(f"cannot reach {shown}: {why}") from exc
    if response.status_code != 200:
        raise TreeUnavailable(f"{shown} answered HTTP {response.status_code}")
    try:
        snapshot = response.json()
    except ValueError:
        snapshot = None
    if not isinstance(snapshot, dict) or "children" not in snapshot:
        raise TreeUnavailable(f"{shown} did not send a supervision tree snapshot")
    return snapshot


def _view(url: str, snapshot: dict[str, Any] | None, problem: str | None) -> RenderableType:
    from .._render import render_tree

    stamp = time.strftime("%H:%M:%S")
    parts: list[RenderableType] = [Text(f"{mask_urls(url)}  {stamp}", style="dim")]
    if snapshot is not None:
        parts.append(render_tree(snapshot))
    if problem is not None:
        parts.append(Text(f"{problem} (retrying)", style="bold red"))
    return Group(*parts)


def watch_tree(url: str, *, interval: float = 1.0, once: bool = False, timeout: float = 5.0) -> int:
    """Print the tree at ``url`` once, or redraw it every ``interval`` seconds until
    Ctrl-C. Returns the exit code: 1 when the first fetch fails, else 0.

    Example::

        watch_tree("http://127.0.0.1:9464", once=True)
    """
    from rich.live import Live

    url = tree_url(url)
    out, err = console(), console(sys.stderr)
    try:
        snapshot = fetch_tree(url, timeout=timeout)
    except TreeUnavailable as exc:
        err.print(Text(f"error: {exc}", style="bold red"))
        return 1
    if once:
        out.print(_view(url, snapshot, None))
        return 0
    try:
        with Live(_view(url, snapshot, None), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                problem = None
                try:
                    snapshot = fetch_tree(url, timeout=timeout)
                except TreeUnavailable as exc:
                    problem = str(exc)
                live.update(_view(url, snapshot, problem), refresh=True)
    except KeyboardInterrupt:
        return 0
