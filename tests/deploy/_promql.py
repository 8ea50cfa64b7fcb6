"""What the deploy/ files name, and what a running service exposes, for the tests that
hold them together."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests._live import running_service

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "gochat-actors.json"
RULES = ROOT / "deploy" / "prometheus" / "gochat-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "gochat-alerts.test.yml"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GOCHAT_NAME = re.compile(r"(?<![A-Za-z0-9_:])gochat_[A-Za-z0-9_:]*")
# Grafana's variables, as a query sent to Prometheus would have them
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def metric_names(expr: str) -> set[str]:
    """The ``gochat_*`` metric names a PromQL expression reads (not in strings).

    >>> sorted(metric_names('rate(gochat_a_total{x="gochat_b"}[1m]) / gochat_c'))
    ['gochat_a_total', 'gochat_c']
    """
    return set(_GOCHAT_NAME.findall(_STRING.sub('""', expr)))


def load_dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included (rows themselves excluded)."""
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", ())
        else:
            yield panel


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(where, PromQL)`` of every panel target and every query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", ()):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", ()):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", text)
            yield f"variable {variable['name']}", inner.group(1) if inner else text


def as_prometheus_query(expr: str) -> str:
    """``expr`` with Grafana's variables filled in as Grafana sends them."""
    for name, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)  # $job, ${instance}: "All"


def load_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def load_rule_tests() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    return doc


async def exposed_names() -> set[str]:
    """Every series name a running service's ``/metrics`` can have: each family's
    samples by its type (a histogram's ``_bucket``, ``_sum``, ``_count``), whether or
    not a labelled family has a series yet."""
    async with running_service() as (_, client):
        text = (await client.get("/metrics")).text
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
            names.update(name + suffix for suffix in suffixes)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return {name for name in names if name.startswith("gochat_")}
