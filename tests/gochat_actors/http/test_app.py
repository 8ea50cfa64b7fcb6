"""The HTML page and the helpers of the app, without a server."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest

from gochat_actors.http import render_tree_html
from gochat_actors.http._app import redact, wants_html
from gochat_actors.http._html import CONTENT_SECURITY_POLICY

from ._helpers import parse


def node(id: str, path: str, state: str = "running", **extra: Any) -> dict[str, Any]:
    return {
        "id": id,
        "path": path,
        "kind": "worker",
        "state": state,
        "restarts": 0,
        "last_error": None,
        "uptime": 1.5,
        "health": {"status": "ok", "reason": ""},
        "mailbox": None,
        "children": [],
        **extra,
    }


def test_every_string_of_the_snapshot_is_escaped() -> None:
    evil = '<script>alert("x")</script>'
    snapshot = node(
        "<root>",
        "",
        live=True,
        ready=False,
        reasons=[f"{evil}: failed"],
        children=[
            node(evil, f'a"/{evil}', state=evil, last_error=f"Boom: {evil} & more"),
            node(
                "mbx",
                "mbx",
                kind="actor",
                mailbox={"depth": 3, "size": 10, "peak": 7},
                health={"status": "degraded", "reason": evil},
                restarts=2,
            ),
        ],
    )
    page = render_tree_html(snapshot)
    assert page.count("<script") == 1  # the page's own, not the snapshot's
    assert "&lt;script&gt;" in page
    parsed = parse(page)
    assert parsed.scripts == 1
    assert parsed.nodes == {"": "running", f'a"/{evil}': evil, "mbx": "running"}
    text = "".join(parsed.text)
    assert f"Boom: {evil} & more" in text
    assert "3/10 peak 7" in text
    assert "not ready" in text
    assert 'class="state state-unknown"' in page  # an unknown state gets no made-up class
    assert parsed.rows["mbx"] == {
        "path": "mbx",
        "state": "running",
        "restarts": "2",
        "health": "degraded",
        "mailbox": "3",
    }


def test_every_child_shows_state_restarts_health_and_mailbox() -> None:
    snapshot = node(
        "<root>",
        "",
        kind="supervisor",
        children=[
            node("db", "db"),
            node("rooms", "rooms", kind="supervisor", children=[node("room-1", "rooms/room-1")]),
            node("greeter", "greeter", kind="actor", mailbox={"depth": 0, "size": 8, "peak": 2}),
        ],
    )
    parsed = parse(render_tree_html(snapshot))
    assert list(parsed.rows) == ["", "db", "rooms", "rooms/room-1", "greeter"]
    for row in parsed.rows.values():
        assert (row["state"], row["restarts"], row["health"]) == ("running", "0", "ok")
    assert parsed.rows["greeter"]["mailbox"] == "0"
    assert "mailbox" not in parsed.rows["db"]  # not an actor: no mailbox
    text = "".join(parsed.text)
    for heading in ("state", "restarts", "health", "mailbox"):
        assert heading in text
    assert "\u2514\u2500 room-1" in text  # drawn as a tree


def test_refresh_can_be_turned_off() -> None:
    assert parse(render_tree_html(node("r", ""), refresh=5)).refresh == "5"
    assert parse(render_tree_html(node("r", ""), refresh=5)).scripts == 1
    still = parse(render_tree_html(node("r", ""), refresh=None))
    assert (still.refresh, still.scripts) == (None, 0)


def test_the_page_script_and_style_are_the_ones_its_csp_allows() -> None:
    page = render_tree_html(node("r", ""))
    [script] = re.findall(r"<script>(.*?)</script>", page, re.S)
    [style] = re.findall(r"<style>(.*?)</style>", page, re.S)
    for text, directive in ((script, "script-src"), (style, "style-src")):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
        ("*/*", False),
        ("", False),
        ("application/json", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=0", False),
        ("text/html;q=oops", False),
        ("TEXT/HTML", True),
    ],
)
def test_wants_html(accept: str, html: bool) -> None:
    assert wants_html(accept) is html


def test_redact_masks_urls_everywhere_and_keeps_json_valid() -> None:
    doc = {
        "last_error": "OSError: redis://:pw@cache:6379/0 down",
        "children": [{"reasons": ("mysql+aiomysql://u:p@h/db",)}],
        "mailbox": {"size": float("inf"), "depth": 2},
    }
    clean = redact(doc)
    assert clean == {
        "last_error": "OSError: redis://:***@cache:6379/0 down",
        "children": [{"reasons": ["mysql+aiomysql://u:***@h/db"]}],
        "mailbox": {"size": "inf", "depth": 2},
    }
    json.dumps(clean, allow_nan=False)


def test_redact_masks_secret_query_parameters_in_last_error() -> None:
    # Regression (issue 22 point 5): only user:pw@ was masked, not ?password=...
    doc = {
        "last_error": "OSError: cannot reach http://etcd:2379/v3?password=Pa55-w0rd&x=1",
        "health": {"reason": "PING failed: redis://h/0?token=Pa55-w0rd"},
    }
    clean = redact(doc)
    assert "Pa55-w0rd" not in json.dumps(clean)
    assert clean["last_error"] == "OSError: cannot reach http://etcd:2379/v3?password=***&x=1"
