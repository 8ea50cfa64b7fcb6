"""``/metrics`` of a running service: clean for ``promtool check metrics``, and in the
OpenMetrics format when the scraper asks for it (content negotiation on ``Accept``)."""

from __future__ import annotations

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from gochat_actors.http._app import metrics_format
from tests._live import running_service
from tests._tools import promtool

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
# What Prometheus 2.x sends when it scrapes (OpenMetrics first, the text format next).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


async def test_metrics_of_a_running_service_pass_promtool_check_metrics() -> None:
    async with running_service() as (_, client):
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == TEXT
    done = promtool("check", "metrics", stdin=response.content)
    # promtool prints its lint findings and exits non-zero (3) on any
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


async def test_metrics_in_openmetrics_when_the_scraper_asks_for_it() -> None:
    async with running_service() as (_, client):
        plain = await client.get("/metrics")
        negotiated = await client.get("/metrics", headers={"accept": PROMETHEUS_ACCEPT})
        head = await client.head("/metrics", headers={"accept": PROMETHEUS_ACCEPT})
    assert negotiated.status_code == 200
    assert negotiated.headers["content-type"] == OPENMETRICS
    assert head.headers["content-type"] == OPENMETRICS
    assert negotiated.text.endswith("# EOF\n")
    # the same families either way (OpenMetrics names counters without _total too)
    open_names = {f.name for f in openmetrics_families(negotiated.text)}  # type: ignore[no-untyped-call]
    text_names = {f.name for f in text_string_to_metric_families(plain.text)}
    # (the text parser reads a counter's _created sample as a family of its own)
    gochat = {n for n in text_names if n.startswith("gochat_") and not n.endswith("_created")}
    assert gochat <= open_names
    assert "gochat_actor_restarts" in open_names


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        ("", False),
        ("*/*", False),
        ("text/plain", False),
        ("text/plain;version=0.0.4", False),
        (PROMETHEUS_ACCEPT, True),
        ("application/openmetrics-text", True),
        ("application/openmetrics-text; version=1.0.0", True),
        ("application/openmetrics-text;q=0", False),
        ("text/plain;q=0.9, application/openmetrics-text;q=0.5", False),
    ],
)
def test_metrics_format_follows_accept(accept: str, openmetrics: bool) -> None:
    _, content_type = metrics_format(accept)
    assert content_type == (OPENMETRICS if openmetrics else TEXT)
