"""The ``gochat_*`` families pinned: name, type, help, labels and buckets, in order.

The dashboards and alert rules in deploy/ (and their promtool checks) read these
families; wherever a family is declared, a fresh ``Metrics()`` renders exactly this.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gochat_actors.metrics import Metrics

FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SLOW = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# (attribute, family name as the parser reports it, type, help, labels, buckets)
PINNED: list[tuple[str, str, str, str, tuple[str, ...], tuple[float, ...]]] = [
    ("db_connections_active", "gochat_db_connections_active", "gauge",
     "Active database connections (checked out of the pools).", (), ()),
    ("db_query_duration", "gochat_db_query_duration_seconds", "histogram",
     "Database query duration in seconds.", ("operation", "table"), SLOW),
    ("db_query_errors", "gochat_db_query_errors", "counter",
     "Database queries that raised.", ("operation", "table"), ()),
    ("db_replica_healthy", "gochat_db_replica_healthy", "gauge",
     "1 when the read replica is admitted, 0 when ejected.", ("replica",), ()),
    ("cache_hits", "gochat_cache_hits", "counter",
     "Cache lookups that found the key.", ("prefix",), ()),
    ("cache_misses", "gochat_cache_misses", "counter",
     "Cache lookups that did not find the key.", ("prefix",), ()),
    ("cache_operation_duration", "gochat_cache_operation_duration_seconds", "histogram",
     "Cache operation duration in seconds.", ("op", "prefix"), FAST),
    ("lock_acquired", "gochat_lock_acquired", "counter",
     "Locks acquired.", ("prefix",), ()),
    ("lock_lost", "gochat_lock_lost", "counter",
     "Locks lost while held (renewal failed or ownership gone).", ("prefix",), ()),
    ("lock_acquire_duration", "gochat_lock_acquire_duration_seconds", "histogram",
     "Time to acquire a lock, waiting included.", ("prefix",), SLOW),
    ("mq_messages_produced", "gochat_mq_messages_produced", "counter",
     "Messages produced (acknowledged by the broker).", ("topic",), ()),
    ("mq_messages_consumed", "gochat_mq_messages_consumed", "counter",
     "Messages consumed and processed.", ("topic",), ()),
    ("mq_processing_duration", "gochat_mq_processing_seconds", "histogram",
     "Time to process one consumed message.", ("topic",), SLOW),
    ("mq_retries", "gochat_mq_retries", "counter",
     "Message processing retries.", ("topic",), ()),
    ("mq_dead_lettered", "gochat_mq_dead_lettered", "counter",
     "Messages sent to the dead-letter topic.", ("topic",), ()),
    ("mq_lag", "gochat_mq_lag", "gauge",
     "Consumer lag in messages (high watermark - committed offset).", ("topic", "partition"), ()),
    ("idgen_issued", "gochat_idgen_issued", "counter",
     "IDs issued.", (), ()),
    ("idgen_next_millisecond_waits", "gochat_idgen_next_millisecond_waits", "counter",
     "Times the sequence overflowed and waited for the next millisecond.", (), ()),
    ("idgen_renewals", "gochat_idgen_renewals", "counter",
     "Machine-ID lease keepalives acknowledged.", (), ()),
    ("idgen_renewal_failures", "gochat_idgen_renewal_failures", "counter",
     "Machine-ID lease keepalives that failed.", (), ()),
    ("idgen_machine_id", "gochat_idgen_machine_id", "gauge",
     "The machine ID in use (-1 while none is held).", (), ()),
    ("actor_restarts", "gochat_actor_restarts", "counter",
     "Restarts of a supervised child.", ("child",), ()),
    ("actor_mailbox_depth", "gochat_actor_mailbox_depth", "gauge",
     "Messages waiting in an actor's mailbox.", ("child",), ()),
    ("supervisor_children", "gochat_supervisor_children", "gauge",
     "Supervised children by state.", ("state",), ()),
]  # fmt: skip


def _families(metrics: Metrics) -> list[Any]:
    return [
        family
        for family in text_string_to_metric_families(metrics.render().decode())
        if not family.name.endswith("_created")  # the client's extras, if enabled
    ]


def test_a_fresh_metrics_renders_exactly_the_pinned_families_in_order() -> None:
    got = [(f.name, f.type, f.documentation) for f in _families(Metrics())]
    assert got == [(name, kind, help) for _, name, kind, help, _, _ in PINNED]


def _feed(metrics: Metrics, attr: str, kind: str, labels: tuple[str, ...]) -> None:
    family = getattr(metrics, attr)
    series = family.labels(*(f"v{i}" for i in range(len(labels)))) if labels else family
    if kind == "histogram":
        series.observe(0.0)
    elif kind == "counter":
        series.inc()
    else:
        series.set(1)


def _samples(metrics: Metrics) -> dict[str, list[Any]]:
    return {f.name: f.samples for f in _families(metrics)}


def test_each_attribute_feeds_its_family_with_the_pinned_labels_and_buckets() -> None:
    fresh = _samples(Metrics())
    for attr, name, kind, _, labels, buckets in PINNED:
        metrics = Metrics()
        _feed(metrics, attr, kind, labels)
        got = _samples(metrics)
        assert [n for n in got if got[n] != fresh[n]] == [name], attr
        for sample in got[name]:
            assert set(sample.labels) - {"le"} == set(labels), (name, sample)
        bounds = [float(s.labels["le"]) for s in got[name] if s.name.endswith("_bucket")]
        assert bounds == ([*buckets, float("inf")] if kind == "histogram" else []), name


def test_the_machine_id_gauge_starts_at_minus_one_and_no_other_family_has_a_series() -> None:
    got = {name: samples for name, samples in _samples(Metrics()).items() if samples}
    assert [(s.name, s.labels, s.value) for s in got.pop("gochat_idgen_machine_id")] == [
        ("gochat_idgen_machine_id", {}, -1.0)
    ]
    unlabelled = {name for _, name, _, _, labels, _ in PINNED if not labels}
    assert set(got) <= unlabelled  # an unlabelled family has its one series at 0
