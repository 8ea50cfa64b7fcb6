"""Metrics: every family rendered and parsed back, bounded labels, one registry per instance."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gochat_actors.metrics import CONTENT_TYPE, OTHER_PREFIX, Metrics, key_prefix

FAMILIES = {
    # name (as the parser reports it: counters without _total) -> type
    "gochat_db_connections_active": "gauge",
    "gochat_db_query_duration_seconds": "histogram",
    "gochat_db_query_errors": "counter",
    "gochat_db_replica_healthy": "gauge",
    "gochat_cache_hits": "counter",
    "gochat_cache_misses": "counter",
    "gochat_cache_operation_duration_seconds": "histogram",
    "gochat_lock_acquired": "counter",
    "gochat_lock_lost": "counter",
    "gochat_lock_acquire_duration_seconds": "histogram",
    "gochat_mq_messages_produced": "counter",
    "gochat_mq_messages_consumed": "counter",
    "gochat_mq_processing_seconds": "histogram",
    "gochat_mq_retries": "counter",
    "gochat_mq_dead_lettered": "counter",
    "gochat_mq_lag": "gauge",
    "gochat_idgen_issued": "counter",
    "gochat_idgen_next_millisecond_waits": "counter",
    "gochat_idgen_renewals": "counter",
    "gochat_idgen_renewal_failures": "counter",
    "gochat_idgen_machine_id": "gauge",
    "gochat_actor_restarts": "counter",
    "gochat_actor_mailbox_depth": "gauge",
    "gochat_supervisor_children": "gauge",
}


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, frozenset(labels.items()))]


def test_every_family_is_rendered_with_its_type() -> None:
    families = {f.name: f.type for f in text_string_to_metric_families(Metrics().render().decode())}
    gochat = {
        name: kind
        for name, kind in families.items()
        if name.startswith("gochat_") and not name.endswith("_created")  # client's extras
    }
    assert gochat == FAMILIES


def test_label_names() -> None:
    m = Metrics()
    m.db_query_duration.labels(operation="select", table="messages").observe(0.01)
    m.db_query_errors.labels(operation="insert", table="messages").inc()
    m.cache_operation_duration.labels(op="get", prefix="user").observe(0.0002)
    m.mq_lag.labels(topic="chat", partition="3").set(12)
    m.db_replica_healthy.labels(replica="replica-0").set(1)
    m.actor_restarts.labels(child="cache").inc()
    m.actor_mailbox_depth.labels(child="room-7").set(4)
    m.supervisor_children.labels(state="running").set(9)
    got = samples(m)
    assert (
        got[
            (
                "gochat_db_query_errors_total",
                frozenset({("operation", "insert"), ("table", "messages")}),
            )
        ]
        == 1
    )
    assert (
        got[
            (
                "gochat_db_query_duration_seconds_count",
                frozenset({("operation", "select"), ("table", "messages")}),
            )
        ]
        == 1
    )
    assert (
        got[
            (
                "gochat_cache_operation_duration_seconds_count",
                frozenset({("op", "get"), ("prefix", "user")}),
            )
        ]
        == 1
    )
    assert got[("gochat_mq_lag", frozenset({("topic", "chat"), ("partition", "3")}))] == 12
    assert got[("gochat_db_replica_healthy", frozenset({("replica", "replica-0")}))] == 1
    assert got[("gochat_actor_restarts_total", frozenset({("child", "cache")}))] == 1
    assert got[("gochat_actor_mailbox_depth", frozenset({("child", "room-7")}))] == 4
    assert got[("gochat_supervisor_children", frozenset({("state", "running")}))] == 9


def test_two_instances_do_not_collide_nor_touch_the_global_registry() -> None:
    before = {m.name for m in REGISTRY.collect()}
    a, b = Metrics(), Metrics()
    a.cache_hits.labels(prefix="user").inc(3)
    b.cache_hits.labels(prefix="user").inc()
    assert value(a, "gochat_cache_hits_total", prefix="user") == 3
    assert value(b, "gochat_cache_hits_total", prefix="user") == 1
    assert a.registry is not b.registry
    assert {m.name for m in REGISTRY.collect()} == before


def test_a_given_registry_is_used() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.idgen_issued.inc(5)
    assert registry.get_sample_value("gochat_idgen_issued_total") == 5


def test_namespace() -> None:
    m = Metrics(namespace="chatx")
    names = {f.name for f in text_string_to_metric_families(m.render().decode())}
    assert "chatx_cache_hits" in names
    assert not any(name.startswith("gochat_") for name in names)


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        ("user:42:profile", "user"),
        (b"room:7", "room"),
        ("session-42", OTHER_PREFIX),
        (":leading", OTHER_PREFIX),
        ("has space:x", OTHER_PREFIX),
        ("x" * 49 + ":y", OTHER_PREFIX),
        ("msg.v2:1", "msg.v2"),
    ],
)
def test_key_prefix(key: str | bytes, prefix: str) -> None:
    assert key_prefix(key) == prefix


def test_cache_helpers_label_by_prefix_never_by_key() -> None:
    m = Metrics()
    for user in range(50):
        m.record_cache_lookup(f"user:{user}", hit=user % 2 == 0)
        with m.time_cache_op("get", f"user:{user}"):
            pass
    m.record_cache_lookup("no-prefix-key-123", hit=False)
    got = samples(m)
    assert value(m, "gochat_cache_hits_total", prefix="user") == 25
    assert value(m, "gochat_cache_misses_total", prefix="user") == 25
    assert value(m, "gochat_cache_misses_total", prefix=OTHER_PREFIX) == 1
    assert value(m, "gochat_cache_operation_duration_seconds_count", op="get", prefix="user") == 50
    label_values = {v for (_, labels) in got for (_, v) in labels}
    assert not any(v.startswith(("user:", "no-prefix")) for v in label_values)


def test_time_db_query_counts_errors() -> None:
    m = Metrics()
    with m.time_db_query("select", "messages"):
        pass
    with pytest.raises(RuntimeError), m.time_db_query("select", "messages"):
        raise RuntimeError("boom")
    labels = {"operation": "select", "table": "messages"}
    assert value(m, "gochat_db_query_duration_seconds_count", **labels) == 2
    assert value(m, "gochat_db_query_errors_total", **labels) == 1


def test_time_mq_processing() -> None:
    m = Metrics()
    with m.time_mq_processing("chat.messages"):
        pass
    assert value(m, "gochat_mq_processing_seconds_count", topic="chat.messages") == 1


def test_machine_id_gauge_starts_at_minus_one() -> None:
    assert value(Metrics(), "gochat_idgen_machine_id") == -1


def test_render_and_content_type() -> None:
    m = Metrics()
    assert m.content_type == CONTENT_TYPE
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    body = m.render()
    assert isinstance(body, bytes)
    assert b"# TYPE gochat_cache_hits_total counter" in body


def observed_both_ways(
    values: list[float],
    before: list[float] = [],  # noqa: B006 (never mutated)
) -> tuple[dict[Any, str], dict[Any, str]]:
    """The samples of a histogram fed ``values`` by observe() one by one, and by
    observe_many(), after both were fed ``before`` by observe(); repr'd so that NaN
    equals NaN and -0.0 shows."""
    from prometheus_client import Histogram

    from gochat_actors.metrics import observe_many

    one, many = CollectorRegistry(), CollectorRegistry()
    buckets = (0.001, 0.005, 0.01, 0.1)
    by_one = Histogram("h", "h", ["t"], registry=one, buckets=buckets).labels("a")
    by_many = Histogram("h", "h", ["t"], registry=many, buckets=buckets).labels("a")
    for value in before:
        by_one.observe(value)
        by_many.observe(value)
    for value in values:
        by_one.observe(value)
    observe_many(by_many, values)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], str]:
        return {
            (s.name, s.labels.get("le", "")): repr(s.value)
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    return samples(one), samples(many)


def test_observe_many_counts_as_observe_one_by_one() -> None:
    one, many = observed_both_ways([0.0, 0.0005, 0.001, 0.0010001, 0.005, 0.02, 0.5, 1e9])
    assert many == one
    assert many[("h_bucket", "0.001")] == "3.0"  # a bound itself counts in its bucket


def test_observe_many_counts_a_slice_of_many_values_as_observe() -> None:
    """A consumer's slice: hundreds of values, unsorted, bounds and repeats among them."""
    import random

    rng = random.Random(7)
    values = [rng.choice((1e-6, 0.001, 0.005, 0.2, 7.0)) * rng.random() for _ in range(700)]
    values += [0.001, 0.005, 0.01, 0.1, 0.1, -1.0, 0.0, -0.0, float("inf")] * 3
    rng.shuffle(values)
    one, many = observed_both_ways(values, before=[0.002, 0.3])
    assert many == one


def test_observe_many_falls_back_to_observe_for_other_histograms() -> None:
    from gochat_actors.metrics import observe_many

    class Plain:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, value: float) -> None:
            self.seen.append(value)

    plain = Plain()
    observe_many(plain, [0.1, 0.2])
    assert plain.seen == [0.1, 0.2]


def test_timings_are_held_then_seen_by_any_scrape_or_folded_every_fold_at() -> None:
    from prometheus_client import generate_latest

    from gochat_actors.metrics._metrics import FOLD_AT

    m = Metrics()
    child = m.db_query_duration.labels(operation="select", table="rooms")
    labels = {"operation": "select", "table": "rooms"}
    count = "gochat_db_query_duration_seconds_count"
    with m.time_db_query("select", "rooms"):
        pass
    assert child._sum.get() == 0  # held: no histogram lock taken for it yet
    assert m.registry.get_sample_value(count, labels) == 1  # a scrape folds it first
    with m.time_db_query("select", "rooms"):
        pass
    # a scrape restricted by name (prometheus_client's ?name[]=) folds them too
    only = m.registry.restricted_registry([count])
    assert b'table="rooms"} 2.0' in generate_latest(only)
    for _ in range(FOLD_AT):  # with no scrape at all, every FOLD_AT timings are folded
        with m.time_cache_op("get", "user:1"):
            pass
    cache = m.cache_operation_duration.labels(op="get", prefix="user")
    assert cache._sum.get() > 0
    assert (
        m.registry.get_sample_value(
            "gochat_cache_operation_duration_seconds_count", {"op": "get", "prefix": "user"}
        )
        == FOLD_AT
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=20),
)
def test_observe_many_matches_observe_for_any_float_nan_and_infinities_included(
    values: list[float],
) -> None:
    # Regression (issue 27 point 30): NaN went into the first bucket (bisect puts it at 0)
    # where observe() counts it in no bucket at all.
    one, many = observed_both_ways(values)
    assert many == one
    if values and all(math.isnan(v) for v in values):
        assert many[("h_count", "")] == "0.0"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), max_size=5),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=20),
)
def test_observe_many_adds_to_the_sum_as_observe_does_one_by_one(
    before: list[float], values: list[float]
) -> None:
    # observe_many added sum(values) to the sum at once: (s + a) + b and s + (a + b) round
    # differently (s=1e16, values [1.0, 1.0]: 1e16 vs 1e16+2), and from Python 3.12 on
    # sum() compensates its rounding, so even a fresh histogram's sum differed.
    one, many = observed_both_ways(values, before)
    assert many == one


def test_observe_many_sum_when_order_matters() -> None:
    one, many = observed_both_ways([1.0, 1.0], before=[1e16])
    assert many == one
    one, many = observed_both_ways([1e16, 1.0, -1e16])  # sum() gives 1.0 on Python >= 3.12
    assert many == one
