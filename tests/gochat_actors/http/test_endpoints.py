"""The endpoints over real HTTP: health, readiness, the tree (JSON and HTML), metrics,
secrets, the root of nested trees, errors and a bounded graceful shutdown."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from gochat_actors import ComponentUnavailable
from gochat_actors.http import HTTPEndpoints, HTTPSettings
from gochat_actors.http._html import CONTENT_SECURITY_POLICY
from gochat_actors.metrics import Metrics
from supervisors import (
    Actor,
    Backoff,
    ChildSpec,
    ChildStarted,
    ChildStartError,
    Health,
    actor_spec,
    open_supervisor,
    supervisor_spec,
    whereis,
)
from supervisors.testing import kill

from ._helpers import DSN, SECRET, Served, idle, parse, serving

NEVER = Backoff(initial=3600.0, maximum=3600.0, jitter=0.0)


async def wait_started(served: Served, child: str, action: Any) -> None:
    """Run ``action()`` and wait until ``child`` has started again."""
    async with served.sup.events() as stream:
        action()
        async for event in stream:
            if isinstance(event, ChildStarted) and event.child == child:
                return


async def test_healthz_and_readyz_when_all_is_well() -> None:
    async with serving(ChildSpec("worker", idle)) as s:
        assert await s.json("/healthz") == {"live": True, "reasons": []}
        assert await s.json("/readyz") == {"ready": True, "live": True, "reasons": []}


async def test_readyz_flips_to_503_while_a_child_reports_failed_health_and_back() -> None:
    async with serving(ChildSpec("worker", idle)) as s:
        handle = s.sup.child_handle("worker")
        assert handle is not None
        handle.set_health(Health.FAILED, f"cannot reach {DSN}")
        doc = await s.json("/readyz", 503)
        assert doc["ready"] is False
        assert doc["reasons"] == [
            "worker: failed (cannot reach mysql+aiomysql://app:***@127.0.0.1:3306/chat)"
        ]
        assert (await s.json("/healthz"))["live"] is True  # not ready, still alive
        handle.set_health(Health.OK)
        assert (await s.json("/readyz"))["ready"] is True


async def test_readyz_503_while_a_child_waits_for_its_restart_and_tree_hides_the_dsn() -> None:
    async with serving(ChildSpec("db", idle), backoff=NEVER) as s:
        kill(s.sup, "db", ConnectionError(f"lost {DSN}"))
        await trio.testing.wait_all_tasks_blocked()
        doc = await s.json("/readyz", 503)
        assert doc["reasons"] == ["db: restarting"]

        tree = await s.json("/debug/tree")
        [node] = [c for c in tree["children"] if c["id"] == "db"]
        assert node["state"] == "restarting"
        assert node["restarts"] == 1
        assert node["last_error"] == (
            "ConnectionError: lost mysql+aiomysql://app:***@127.0.0.1:3306/chat"
        )
        for path in ("/debug/tree", "/debug/tree.html", "/readyz", "/metrics"):
            assert SECRET not in (await s.client.get(path)).text

        await s.sup.restart_child("db")
        assert (await s.json("/readyz"))["ready"] is True


async def test_healthz_503_in_a_restart_storm() -> None:
    async with serving(ChildSpec("flaky", idle), max_restarts=2, max_seconds=3600.0) as s:
        for _ in range(2):
            await wait_started(s, "flaky", lambda: kill(s.sup, "flaky"))
        doc = await s.json("/healthz", 503)
        assert doc["live"] is False
        assert doc["reasons"] == ["<root>: restart storm (2 restarts in 3600s)"]
        assert (await s.json("/readyz", 503))["ready"] is False


async def test_debug_tree_json_html_and_negotiation() -> None:
    group = supervisor_spec("rooms", [ChildSpec("room-1", idle), ChildSpec("room-2", idle)])
    async with serving(ChildSpec("worker", idle), group) as s:
        tree = await s.json("/debug/tree")
        assert tree["live"] is True
        assert tree["ready"] is True
        assert [c["id"] for c in tree["children"]] == ["http", "worker", "rooms"]
        rooms = tree["children"][2]
        assert [c["path"] for c in rooms["children"]] == ["rooms/room-1", "rooms/room-2"]

        browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        response = await s.client.get("/debug/tree", headers={"accept": browser})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        page = parse(response.text)
        assert page.nodes == {
            "": "running",
            "http": "running",
            "worker": "running",
            "rooms": "running",
            "rooms/room-1": "running",
            "rooms/room-2": "running",
        }
        assert page.refresh == "2"
        assert "room-2" in page.text
        assert "ready" in page.text

        s.sup.child_handle("worker").set_health(Health.DEGRADED, "<b>slow</b> & late")  # type: ignore[union-attr]
        still = await s.client.get("/debug/tree.html?refresh=0")
        assert "&lt;b&gt;slow&lt;/b&gt; &amp; late" in still.text
        assert "<b>slow</b>" not in still.text
        assert parse(still.text).refresh is None

        as_json = await s.client.get("/debug/tree", headers={"accept": "application/json"})
        assert as_json.headers["content-type"] == "application/json"


class Stuck(Actor):
    """Takes the first message and never finishes it: the rest wait in the mailbox."""

    async def handle_cast(self, message: Any) -> None:
        await trio.sleep_forever()


async def test_metrics_scraped_over_http_and_parsed() -> None:
    metrics = Metrics()
    stuck = actor_spec("stuck", Stuck, mailbox_size=10)
    async with serving(ChildSpec("worker", idle), stuck, metrics=metrics) as s:
        await wait_started(s, "worker", lambda: kill(s.sup, "worker"))
        ref = whereis("stuck")
        for i in range(4):
            ref.cast_nowait(i)
        await trio.testing.wait_all_tasks_blocked()
        metrics.record_cache_lookup("user:42", hit=True)

        response = await s.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }
    assert samples[("gochat_actor_restarts_total", (("child", "worker"),))] == 1
    assert samples[("gochat_actor_mailbox_depth", (("child", "stuck"),))] == 3
    assert samples[("gochat_supervisor_children", (("state", "running"),))] == 3
    assert samples[("gochat_supervisor_children", (("state", "failed"),))] == 0
    assert samples[("gochat_cache_hits_total", (("prefix", "user"),))] == 1


async def test_the_endpoints_serve_the_root_of_the_tree_they_run_in() -> None:
    endpoints = HTTPEndpoints(HTTPSettings(port=0), metrics=None)
    infra = supervisor_spec("infra", [supervisor_spec("web", [endpoints.spec("http")])])
    async with (
        open_supervisor([infra, ChildSpec("app", idle)]),
        httpx.AsyncClient(base_url=str(endpoints.url)) as client,
    ):
        tree = (await client.get("/debug/tree")).json()
        assert tree["path"] == ""
        assert [c["id"] for c in tree["children"]] == ["infra", "app"]
        assert tree["children"][0]["children"][0]["children"][0]["path"] == "infra/web/http"
        assert (await client.get("/metrics")).status_code == 404  # metrics=None


async def test_an_explicit_supervisor_is_served_from_a_plain_nursery() -> None:
    async with open_supervisor([ChildSpec("only", idle)], name="app") as sup:
        endpoints = HTTPEndpoints(HTTPSettings(port=0), metrics=Metrics(), supervisor=sup)
        async with trio.open_nursery() as nursery:
            url = await nursery.start(endpoints.run)
            assert url == endpoints.url == f"http://127.0.0.1:{endpoints.port}"
            assert await endpoints.wait_url() == url
            async with httpx.AsyncClient(base_url=url) as client:
                tree = (await client.get("/debug/tree")).json()
            assert tree["id"] == "app"
            assert [c["id"] for c in tree["children"]] == ["only"]
            nursery.cancel_scope.cancel()
    assert not_serving(endpoints)


def not_serving(endpoints: HTTPEndpoints) -> bool:
    return endpoints.url is None and endpoints.port is None


async def test_methods_unknown_paths_head_and_index() -> None:
    async with serving() as s:
        post = await s.client.post("/readyz")
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"
        assert (await s.client.get("/nope")).status_code == 404
        head = await s.client.head("/debug/tree")
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) > 0
        index = await s.client.get("/")
        assert "/debug/tree.html" in index.text
        assert index.headers["cache-control"] == "no-store"


async def test_graceful_shutdown_within_the_budget_with_a_connection_open() -> None:
    endpoints = HTTPEndpoints(HTTPSettings(port=0), metrics=Metrics())
    async with httpx.AsyncClient(timeout=10.0) as client:
        async with open_supervisor([endpoints.spec(shutdown=2.0)]) as sup:
            url = str(endpoints.url)
            assert (await client.get(f"{url}/healthz")).status_code == 200  # kept alive
        report = sup.shutdown_report
        assert report is not None
        assert report.clean
        assert not_serving(endpoints)
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{url}/healthz")


async def test_a_port_in_use_fails_the_start_naming_the_address() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        endpoints = HTTPEndpoints(HTTPSettings(port=port), metrics=None)
        with pytest.raises(ChildStartError) as info:
            async with open_supervisor([endpoints.spec()]):
                pass  # pragma: no cover
    finally:
        listener.close()
    cause = info.value.__cause__
    assert isinstance(cause, OSError)
    assert f"http endpoints cannot bind 127.0.0.1:{port}" in str(cause)


async def test_disabled_settings_and_running_outside_a_tree_are_refused() -> None:
    with pytest.raises(ValueError, match="disabled"):
        HTTPEndpoints(HTTPSettings(enabled=False), metrics=None).spec()
    with pytest.raises(TypeError, match="HTTPSettings"):
        HTTPEndpoints({"port": 0}, metrics=None)  # type: ignore[arg-type]
    endpoints = HTTPEndpoints(HTTPSettings(port=0), metrics=None)
    with pytest.raises(RuntimeError, match="serves the tree it runs in"):
        await endpoints.run()
    with pytest.raises(ComponentUnavailable, match="http endpoints is not running"):
        await endpoints.wait_url(timeout=0.01)
    assert repr(endpoints) == "<HTTPEndpoints not serving>"
