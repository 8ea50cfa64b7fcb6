"""deploy/grafana: the dashboard's queries are valid PromQL and read only metric names a
running service exposes, its panels cover the gochat_* families, and it imports into
Grafana as it is (a data-source variable, unique ids, panels that do not overlap)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests._tools import promtool

from ._promql import (
    as_prometheus_query,
    dashboard_queries,
    exposed_names,
    load_dashboard,
    metric_names,
    panels,
)

# What issue 25 asks the dashboard to show, by the series that show it.
TOPICS = {
    "tree restarts": {"gochat_actor_restarts_total"},
    "mailbox depth": {"gochat_actor_mailbox_depth"},
    "DB latency": {"gochat_db_query_duration_seconds_bucket"},
    "replica health": {"gochat_db_replica_healthy"},
    "cache hit ratio": {"gochat_cache_hits_total", "gochat_cache_misses_total"},
    "lock lost": {"gochat_lock_lost_total"},
    "produce/consume rates": {
        "gochat_mq_messages_produced_total",
        "gochat_mq_messages_consumed_total",
    },
    "consumer lag": {"gochat_mq_lag"},
    "DLQ": {"gochat_mq_dead_lettered_total"},
    "idgen renewals": {"gochat_idgen_renewals_total", "gochat_idgen_renewal_failures_total"},
}


def test_metric_names_reads_names_not_strings_or_labels() -> None:
    expr = 'sum by (le) (rate(gochat_a_bucket{x="gochat_b", job=~"$job"}[5m])) / gochat_c:d'
    assert metric_names(expr) == {"gochat_a_bucket", "gochat_c:d"}
    assert as_prometheus_query('rate(x{job=~"$job"}[$__rate_interval])') == 'rate(x{job=~".*"}[1m])'


def all_names() -> set[str]:
    return {name for _, expr in dashboard_queries(load_dashboard()) for name in metric_names(expr)}


async def test_every_query_reads_metrics_a_running_service_exposes() -> None:
    exposed = await exposed_names()
    for where, expr in dashboard_queries(load_dashboard()):
        names = metric_names(expr)
        assert names, f"{where} reads no gochat_* metric: {expr}"
        assert names <= exposed, f"{where} reads {sorted(names - exposed)}, not exposed"


async def test_every_exposed_family_is_on_the_dashboard() -> None:
    shown = all_names()
    for name in await exposed_names():
        if name.endswith("_created"):  # the client's creation timestamps
            continue
        family = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        assert {name, f"{family}_bucket", f"{family}_count"} & shown, f"{name} is on no panel"


def test_the_panels_the_issue_asks_for_are_there() -> None:
    shown = all_names()
    for topic, names in TOPICS.items():
        assert names <= shown, f"no panel shows {topic} ({sorted(names - shown)})"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses each expression as a recording rule's (Grafana's variables filled)
    rules = [
        {"record": f"dashboard:query_{i}", "expr": as_prometheus_query(expr)}
        for i, (_, expr) in enumerate(dashboard_queries(load_dashboard()))
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = promtool("check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_imports_as_it_is() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "gochat-actors"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]] + [
        p["id"] for row in dashboard["panels"] for p in row.get("panels", ())
    ]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[x, y] = panel["title"]
    for panel in panels(dashboard):
        sources: list[Any] = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(s == {"type": "prometheus", "uid": "${datasource}"} for s in sources)
        assert panel.get("description"), f"{panel['title']} has no description"
