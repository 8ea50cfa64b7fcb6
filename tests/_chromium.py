"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol, for the
tests that look at a page as a browser shows it.

One page, one WebSocket (trio-websocket), one caller at a time: :meth:`Page.call`
sends a command and reads until its answer (events in between are dropped). The
browser runs in a session of its own with a fresh profile, and is killed (its whole
process group) when the ``async with`` ends.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests._tools import require_tool

FLAGS = (
    "--headless",
    "--no-sandbox",  # as root in a container: no user namespaces for the sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # any free port, written to DevToolsActivePort
)


class CDPError(RuntimeError):
    """The browser answered a command with an error, or a script threw."""


class Page:
    """One tab: commands, script evaluation, screenshots."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its ``result``."""
        ident = next(self._ids)
        await self._ws.send_message(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await self._ws.get_message())
            if message.get("id") != ident:
                continue  # an event
            if "error" in message:
                raise CDPError(f"{method}: {message['error']}")
            result: dict[str, Any] = message["result"]
            return result

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, timeout: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; its value. ``TooSlowError`` after
        ``timeout`` seconds."""
        with trio.fail_after(timeout):
            while True:
                value = await self.evaluate(expression)
                if value:
                    return value
                await trio.sleep(0.1)  # polling a browser: no event to wait on

    async def goto(self, url: str) -> None:
        """Open ``url`` and wait until it has loaded."""
        await self.call("Page.navigate", url=url)
        await self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        )

    async def screenshot(self, path: Path) -> bytes:
        """A PNG of the page as shown (the whole page, not just the window), saved."""
        metrics = await self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        result = await self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        )
        png = base64.b64decode(result["data"])
        await trio.Path(path).write_bytes(png)
        return png


@asynccontextmanager
async def open_chromium(*, width: int = 1280, height: int = 720) -> AsyncIterator[Page]:
    """A headless Chromium with one blank tab; skips (fails under CI) without chromium."""
    binary = require_tool("chromium")
    with tempfile.TemporaryDirectory(prefix="gochat-chromium-") as profile:
        log = Path(profile) / "chromium.log"
        with log.open("wb") as out:
            proc = await trio.lowlevel.open_process(
                [
                    binary,
                    *FLAGS,
                    f"--user-data-dir={profile}",
                    f"--window-size={width},{height}",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        try:
            port = await _devtools_port(Path(profile), proc, log)
            async with httpx.AsyncClient() as client:
                targets = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
            [tab] = [t for t in targets if t["type"] == "page"]
            async with open_websocket_url(
                tab["webSocketDebuggerUrl"], max_message_size=64 << 20, disconnect_timeout=5
            ) as ws:
                yield Page(ws)
        finally:
            with trio.CancelScope(shield=True):
                _kill_group(proc.pid)
                await proc.wait()


async def _devtools_port(profile: Path, proc: trio.Process, log: Path) -> int:
    active = trio.Path(profile / "DevToolsActivePort")
    with trio.fail_after(60):  # a cold start on a busy machine
        while True:
            if proc.returncode is not None:
                tail = (await trio.Path(log).read_text(errors="replace"))[-2000:]
                raise RuntimeError(f"chromium exited with {proc.returncode}:\n{tail}")
            lines = (await active.read_text()).split() if await active.exists() else []
            if lines:
                return int(lines[0])
            await trio.sleep(0.05)  # written once the browser listens: no event to wait on


def _kill_group(pid: int) -> None:
    # The browser and its helpers (zygote, renderers) share the session we started.
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
