"""The ``gochat_*`` families pinned: name, type, help, labels and buckets, in order.

The dashboards and alert rules in deploy/ (and their promtool checks) read these
families; wherever a family is declared, a fresh ``Metrics()`` renders exactly this.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gochat_actors.metrics import FAST_BUCKETS, SLOW_BUCKETS, Family, Metrics, declare
from gochat_actors.metrics import _family as family_module
from gochat_actors.metrics import _metrics as metrics_module
from gochat_actors.metrics import _runtime as runtime

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


# -- where the families are declared -----------------------------------------------------
COMPONENTS = ["db", "cache", "lock", "mq", "idgen"]


def test_each_component_declares_its_own_families_next_to_its_code() -> None:
    owned: dict[str, str] = {}
    for component in COMPONENTS:
        module = importlib.import_module(f"gochat_actors.{component}._metrics")
        for family in module.FAMILIES:
            assert family.attr.startswith(f"{component}_"), (component, family.attr)
            owned[family.attr] = component
    for family in runtime.FAMILIES:  # fed by RuntimeMetrics, beside it
        owned[family.attr] = "metrics"
    assert set(family_module.declared()) == set(owned) == {attr for attr, *_ in PINNED}


def test_every_typed_attribute_of_metrics_is_a_declared_family_of_its_type() -> None:
    declared = family_module.declared()
    assert set(metrics_module._TYPED) == set(declared)
    assert list(metrics_module._TYPED) == [attr for attr, *_ in PINNED]  # the rendering order
    for attr, hint in metrics_module._TYPED.items():
        assert hint is metrics_module._CLASSES[declared[attr].kind], attr


@pytest.fixture
def scratch_declarations(monkeypatch: pytest.MonkeyPatch) -> dict[str, Family]:
    """What is declared, in a copy this test may change."""
    copy = dict(family_module._DECLARED)
    monkeypatch.setattr(family_module, "_DECLARED", copy)
    return copy


@pytest.mark.usefixtures("scratch_declarations")
def test_a_family_declared_elsewhere_is_registered_after_the_typed_ones() -> None:
    declare(Family.counter("chat_rooms_opened", "Chat rooms opened.", "kind"))
    metrics = Metrics()
    metrics.chat_rooms_opened.labels(kind="public").inc()  # type: ignore[attr-defined]
    names = [f.name for f in _families(metrics)]
    assert names == [name for _, name, *_ in PINNED] + ["gochat_chat_rooms_opened"]


@pytest.mark.usefixtures("scratch_declarations")
def test_declaring_the_same_family_again_changes_nothing_another_under_its_name_raises() -> None:
    hits = family_module.declared()["cache_hits"]
    assert declare(hits) == (hits,)
    with pytest.raises(ValueError, match="clashes"):
        declare(Family.counter("cache_hits", "Something else.", "prefix"))
    with pytest.raises(ValueError, match="clashes"):
        declare(Family("hits_by_another_attr", "counter", "Cache hits.", name="cache_hits"))
    assert family_module.declared()["cache_hits"] is hits


def test_a_metrics_made_before_a_family_is_declared_says_so(
    scratch_declarations: dict[str, Family],
) -> None:
    del scratch_declarations["lock_lost"]
    with pytest.raises(RuntimeError, match="no family declared for 'lock_lost'"):
        Metrics()


def test_a_family_declared_of_another_type_than_its_attribute_is_refused(
    scratch_declarations: dict[str, Family],
) -> None:
    scratch_declarations["lock_lost"] = Family.gauge("lock_lost", "Locks lost.", "prefix")
    with pytest.raises(TypeError, match=r"Metrics\.lock_lost is a Counter, declared a gauge"):
        Metrics()


@pytest.mark.usefixtures("scratch_declarations")
def test_a_family_cannot_take_the_name_of_a_metrics_attribute() -> None:
    with pytest.raises(ValueError, match="'render': the name of an attribute of Metrics"):
        declare(Family.counter("render", "Renders."))
    Metrics()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Family("x", "histogram", "X."), "buckets"),
        (lambda: Family("x", "counter", "X.", buckets=SLOW), "buckets"),
        (lambda: Family("x", "counter", "X.", initial=1), "starting value"),
        (lambda: Family.gauge("x", "X.", "label", initial=1), "starting value"),
    ],
)
def test_a_family_is_checked_when_declared(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_the_shared_buckets_are_the_pinned_ones() -> None:
    assert (FAST_BUCKETS, SLOW_BUCKETS) == (FAST, SLOW)


def test_a_family_is_named_after_its_attribute_unless_told() -> None:
    assert Family.counter("a_b", "A b.").name == "a_b"
    histogram = Family.histogram("a_duration", "a_seconds", "A.", buckets=FAST_BUCKETS)
    assert (histogram.attr, histogram.name, histogram.buckets) == ("a_duration", "a_seconds", FAST)
