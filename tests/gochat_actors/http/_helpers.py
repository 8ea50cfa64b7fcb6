"""A tree with the HTTP endpoints on a free port, and an HTTP client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from typing import Any

import httpx
import trio

from gochat_actors.http import HTTPEndpoints, HTTPSettings
from gochat_actors.metrics import Metrics
from supervisors import ChildSpec, Supervisor, open_supervisor

SECRET = "hunter2-s3cret"
DSN = f"mysql+aiomysql://app:{SECRET}@127.0.0.1:3306/chat"


async def idle(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A child that is ready at once and then waits."""
    task_status.started()
    await trio.sleep_forever()


class Served:
    """What :func:`serving` yields."""

    def __init__(
        self, sup: Supervisor, endpoints: HTTPEndpoints, client: httpx.AsyncClient
    ) -> None:
        self.sup = sup
        self.endpoints = endpoints
        self.client = client

    async def json(self, path: str, status: int = 200) -> Any:
        response = await self.client.get(path)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        return response.json()


@asynccontextmanager
async def serving(
    *children: ChildSpec, metrics: Metrics | None = None, **options: Any
) -> AsyncIterator[Served]:
    """A supervisor running the endpoints (port 0) first, then ``children``."""
    endpoints = HTTPEndpoints(
        HTTPSettings(port=0), metrics=metrics if metrics is not None else Metrics()
    )
    async with open_supervisor([endpoints.spec(shutdown=2.0), *children], **options) as sup:
        assert endpoints.url is not None
        async with httpx.AsyncClient(base_url=endpoints.url, timeout=10.0) as client:
            yield Served(sup, endpoints, client)


class TreeParser(HTMLParser):
    """Collects each rendered node's path and state (and its row's other data
    attributes), the page's text and its scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, str] = {}
        self.rows: dict[str, dict[str, str]] = {}
        self.text: list[str] = []
        self.refresh: str | None = None
        self.scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("class") == "node":
            path = a["data-path"] or ""
            self.nodes[path] = a["data-state"] or ""
            self.rows[path] = {k[5:]: v or "" for k, v in a.items() if k.startswith("data-")}
        if tag == "meta" and a.get("http-equiv") == "refresh":
            self.refresh = a.get("content")
        if tag == "script":
            assert "src" not in a, "the page loads nothing else"
            self.scripts += 1
            self._in_script = True
        assert tag not in ("link", "img", "iframe", "object"), "the page loads nothing else"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if not self._in_script:
            self.text.append(data)


def parse(page: str) -> TreeParser:
    parser = TreeParser()
    parser.feed(page)
    parser.close()
    return parser
