"""A family a user declares (issue 23 point 5) on a running service's ``/metrics``."""

from __future__ import annotations

from unittest.mock import patch

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from gochat_actors.metrics import Family, declare
from gochat_actors.metrics import _family as family_module
from tests._live import running_service
from tests._tools import promtool

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


async def test_a_family_declared_before_the_service_is_served_in_both_formats() -> None:
    with patch.dict(family_module._DECLARED):
        declare(Family.counter("chat_rooms_opened", "Chat rooms opened.", "kind"))
        async with running_service() as (_, client):
            plain = await client.get("/metrics")
            negotiated = await client.get("/metrics", headers={"accept": PROMETHEUS_ACCEPT})
    assert "# TYPE gochat_chat_rooms_opened_total counter" in plain.text
    done = promtool("check", "metrics", stdin=plain.content)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    names = [f.name for f in openmetrics_families(negotiated.text)]  # type: ignore[no-untyped-call]
    assert names[-1] == "gochat_chat_rooms_opened"  # after the typed families
    assert (
        names[: names.index("gochat_supervisor_children") + 1][0] == "gochat_db_connections_active"
    )
