"""deploy/prometheus: the alerting rules pass ``promtool check rules``, their unit tests
pass ``promtool test rules``, every alert has a test where it fires and a section in
docs/operating.md, and every metric they read is one a running service exposes."""

from __future__ import annotations

import re

from tests._tools import promtool

from ._promql import (
    ROOT,
    RULE_TESTS,
    RULES,
    exposed_names,
    load_rule_tests,
    load_rules,
    metric_names,
)

# what issue 25 asks for, by the alert that answers it
REQUIRED = {
    "restart storm": "GochatRestartStorm",
    "lock lost": "GochatLockLost",
    "consumer lag growing": "GochatConsumerLagGrowing",
    "replica ejected": "GochatReplicaEjected",
    "machine-ID renewal failing": "GochatMachineIdRenewalFailing",
}


def alert_names() -> list[str]:
    return [rule["alert"] for rule in load_rules() if "alert" in rule]


def test_rules_pass_promtool_check_rules() -> None:
    done = promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in done.stdout
    assert "WARNING" not in done.stdout + done.stderr  # duplicate rules and the like


def test_rule_unit_tests_pass_promtool_test_rules() -> None:
    done = promtool("test", "rules", RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    assert set(REQUIRED.values()) <= set(alert_names())
    assert len(alert_names()) == len(set(alert_names()))


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in load_rule_tests()["tests"]:
        for check in case.get("alert_rule_test", ()):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fires == set(alert_names())
    assert quiet == set(alert_names())


def test_every_alert_has_severity_summary_and_a_runbook_section() -> None:
    operating = (ROOT / "docs" / "operating.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#{2,4} (\w+)\s*$", operating, re.M))
    for rule in load_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["runbook"] == f"docs/operating.md#{name.lower()}"
        assert name in headings, f"docs/operating.md has no section for {name}"


async def test_rules_read_only_metrics_a_running_service_exposes() -> None:
    exposed = await exposed_names()
    read = {name for rule in load_rules() for name in metric_names(rule["expr"])}
    assert read, "the rules read no gochat_* metric"
    assert read - exposed == set()
