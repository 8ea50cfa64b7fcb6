"""``/debug/tree`` in a real browser (headless Chromium) against a running service: the
page redraws itself, without a reload, when a child is killed and restarts; it shows
state, restarts, health and mailbox depth per child; a screenshot of it is kept.

``GOCHAT_UPDATE_SCREENSHOTS=1`` also writes the screenshot to docs/img/debug-tree.png
(the one docs/operating.md shows).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest
import trio

from gochat_actors import load_settings
from gochat_actors.service import open_service
from supervisors import Actor, Backoff, Health, actor_spec, set_health, supervisor_spec, whereis
from supervisors.testing import kill
from tests._chromium import open_chromium

DOCS_IMG = Path(__file__).resolve().parents[3] / "docs" / "img"
BACKOFF = Backoff(initial=4.0, maximum=4.0, jitter=0.0)  # long enough to be seen restarting


class Room(Actor):
    """A chat room: answers calls; a casted message it keeps forever (a slow handler),
    so the rest wait in its mailbox; ``slow=True`` reports itself degraded."""

    async def init(self, slow: bool = False) -> None:
        if slow:
            set_health(Health.DEGRADED, "replies slowly")

    async def handle_call(self, message: Any) -> str:
        return f"ok {message}"

    async def handle_cast(self, message: Any) -> None:
        await trio.sleep_forever()


def row(path: str) -> str:
    """JS: the dataset of the row of ``path`` as a plain object (or null)."""
    return (
        f"(() => {{ const r = document.querySelector('tr.node[data-path={json.dumps(path)}]');"
        " return r ? Object.assign({}, r.dataset) : null; })()"
    )


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


@pytest.mark.slow
async def test_the_tree_page_shows_a_killed_child_restarting_without_a_reload(
    tmp_path: Path,
) -> None:
    rooms = supervisor_spec(
        "rooms",
        [
            actor_spec("room-1", Room, mailbox_size=16),
            actor_spec("room-2", Room, mailbox_size=16),
            actor_spec("room-3", Room, True, mailbox_size=16),
        ],
        backoff=BACKOFF,
    )
    settings = load_settings(http={"port": 0}, log={"level": "error"})
    async with open_service(settings, children=[rooms]) as service, open_chromium() as page:
        url = await service.http.wait_url(timeout=30.0)
        for i in range(4):  # room-2: one message in hand, three waiting
            whereis("room-2").cast_nowait(i)

        await page.goto(f"{url}/debug/tree?refresh=1")
        await page.evaluate("window.notReloaded = true")
        before = await page.wait_for(row("rooms/room-1"))
        assert (before["state"], before["restarts"], before["health"]) == ("running", "0", "ok")
        await page.wait_for(f"{row('rooms/room-2')}?.mailbox === '3'")
        assert (await page.evaluate(row("rooms/room-3")))["health"] == "degraded"
        assert await page.evaluate(row("db")) is not None  # the standard tree is there too

        assert kill(service.supervisor, "rooms/room-1", ConnectionResetError("peer went away"))
        restarting = await page.wait_for(f"{row('rooms/room-1')}?.state === 'restarting'")
        assert restarting
        seen = await page.evaluate(row("rooms/room-1"))
        assert seen["restarts"] == "1"
        text = await page.evaluate("document.getElementById('live').innerText")
        assert "ConnectionResetError: peer went away" in text
        png = await page.screenshot(tmp_path / "debug-tree.png")
        width, height = png_size(png)
        assert width >= 800
        assert height >= 300
        if os.environ.get("GOCHAT_UPDATE_SCREENSHOTS"):
            await trio.Path(DOCS_IMG / "debug-tree.png").write_bytes(png)

        back = await page.wait_for(f"{row('rooms/room-1')}?.state === 'running'")
        assert back
        assert (await page.evaluate(row("rooms/room-1")))["restarts"] == "1"
        assert await page.evaluate("window.notReloaded === true")  # redrawn, not reloaded
        assert "updated" in await page.evaluate("document.getElementById('status').innerText")


@pytest.mark.slow
async def test_the_tree_page_says_when_the_service_is_gone() -> None:
    settings = load_settings(http={"port": 0}, log={"level": "error"})
    async with open_chromium() as page:
        async with open_service(settings, components=["http"]) as service:
            url = await service.http.wait_url(timeout=30.0)
            await page.goto(f"{url}/debug/tree.html?refresh=1")
            await page.evaluate("window.notReloaded = true")
            await page.wait_for("document.getElementById('status').innerText.includes('updated')")
        status = await page.wait_for(
            "document.body.classList.contains('stale')"
            " && document.getElementById('status').innerText"
        )
        assert "not reachable since" in status
        assert await page.evaluate(row("http")) is not None  # the last tree stays shown
        assert await page.evaluate("window.notReloaded === true")
