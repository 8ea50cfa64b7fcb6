"""The ASGI app of the endpoints: ``/metrics``, ``/healthz``, ``/readyz``, ``/debug/tree``."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics import exposition as openmetrics

from supervisors import Supervisor

from .._dsn import mask_urls
from ..metrics import CONTENT_TYPE, Metrics, RuntimeMetrics
from ._html import CONTENT_SECURITY_POLICY, render_tree_html

__all__ = ["EndpointsApp", "metrics_format", "redact", "wants_html"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_INDEX = "gochat-actors endpoints:\n/metrics\n/healthz\n/readyz\n/debug/tree\n/debug/tree.html\n"


def redact(value: Any) -> Any:
    """``value`` (a snapshot, a list of reasons) with every URL password masked and
    non-finite numbers as strings, so it is safe and valid JSON.

    Example::

        redact({"last_error": "OSError: mysql://app:pw@db/chat"})
        # {'last_error': 'OSError: mysql://app:***@db/chat'}
    """
    if isinstance(value, str):
        return mask_urls(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _quality(accept: str, wanted: str) -> float:
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if media.lower() != wanted:
            continue
        for param in params:
            name, _, number = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(number)
                except ValueError:
                    return 0.0
        return 1.0
    return 0.0


def wants_html(accept: str) -> bool:
    """Whether an ``Accept`` header prefers ``text/html`` to JSON (a browser does;
    ``*/*``, curl and httpx do not).

    Example::

        wants_html("text/html,application/xhtml+xml,*/*;q=0.8")   # True
    """
    html = _quality(accept, "text/html")
    return html > 0 and html >= _quality(accept, _JSON)


def metrics_format(accept: str) -> tuple[Callable[[CollectorRegistry], bytes] | None, str]:
    """How to render ``/metrics`` for an ``Accept`` header: ``(encoder, content type)``.

    OpenMetrics 1.0.0 when the client prefers ``application/openmetrics-text`` to
    ``text/plain`` (Prometheus does when it scrapes); otherwise the text format 0.0.4
    (encoder ``None``: :meth:`Metrics.render`), which every scraper reads.

    Example::

        metrics_format("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
        # (<openmetrics encoder>, 'application/openmetrics-text; version=1.0.0; charset=utf-8')
    """
    wanted = _quality(accept, "application/openmetrics-text")
    if wanted > 0 and wanted >= _quality(accept, "text/plain"):
        return openmetrics.generate_latest, openmetrics.CONTENT_TYPE_LATEST
    return None, CONTENT_TYPE


class EndpointsApp:
    """The ASGI app serving one supervision tree (and, if given, its metrics)."""

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        metrics: Metrics | None = None,
        runtime: RuntimeMetrics | None = None,
        refresh: float = 2.0,
    ) -> None:
        self.supervisor = supervisor
        self.metrics = metrics
        self.runtime = runtime
        self.refresh = refresh

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # websocket: not served
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, _TEXT, b"method not allowed\n", head=False, allow=True)
            return
        status, content_type, body = self._route(scope)
        await _respond(send, status, content_type, body, head=method == "HEAD")

    def _route(self, scope: Scope) -> tuple[int, str, bytes]:
        path = scope.get("path", "/")
        if path == "/metrics" and self.metrics is not None:
            if self.runtime is not None:
                self.runtime.sample(self.supervisor.snapshot())
            encoder, content_type = metrics_format(_header(scope, b"accept"))
            if encoder is None:
                return 200, self.metrics.content_type, self.metrics.render()
            return 200, content_type, encoder(self.metrics.registry)
        if path == "/healthz":
            report = self.supervisor.health()
            doc = {"live": report.live, "reasons": list(report.reasons)}
            return (200 if report.live else 503), _JSON, _json(doc)
        if path == "/readyz":
            report = self.supervisor.health()
            doc = {"ready": report.ready, "live": report.live, "reasons": list(report.reasons)}
            return (200 if report.ready else 503), _JSON, _json(doc)
        if path in ("/debug/tree", "/debug/tree.html", "/debug/tree.json"):
            snapshot = self.supervisor.snapshot()
            if path == "/debug/tree.html" or (
                path == "/debug/tree" and wants_html(_header(scope, b"accept"))
            ):
                page = render_tree_html(redact(snapshot), refresh=self._refresh(scope))
                return 200, _HTML, page.encode()
            return 200, _JSON, _json(snapshot)
        if path == "/":
            return 200, _TEXT, _INDEX.encode()
        return 404, _TEXT, b"not found\n"

    def _refresh(self, scope: Scope) -> float | None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("refresh", [""])[0]
        if not given:
            return self.refresh
        try:
            seconds = float(given)
        except ValueError:
            return self.refresh
        if not math.isfinite(seconds) or seconds <= 0:
            return None  # ?refresh=0: a still page
        return min(seconds, 3600.0)


def _json(doc: Any) -> bytes:
    return json.dumps(redact(doc), separators=(",", ":")).encode()


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


async def _respond(
    send: Send, status: int, content_type: str, body: bytes, *, head: bool, allow: bool = False
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    if allow:
        headers.append((b"allow", b"GET, HEAD"))
    if content_type == _HTML:  # the tree page: its own script and style, nothing else
        headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
