"""Adversarial review of the declared metric families (issue 23 point 5).

What a ``declare`` accepts, ``Metrics()`` must be able to register; what the package
renders must not depend on where (or in which namespace, or how often) it is declared.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import gochat_actors
from gochat_actors.metrics import SLOW_BUCKETS, Family, Metrics, declare
from gochat_actors.metrics import _family as family_module

COMPONENTS = ["db", "cache", "lock", "mq", "idgen"]
_CREATED = re.compile(rb"^(# (HELP|TYPE) )?\w+_created[ {].*$\n?", re.MULTILINE)


@pytest.fixture(autouse=True)
def scratch_declarations() -> Iterator[None]:
    """Whatever a test declares is forgotten after it."""
    with patch.dict(family_module._DECLARED):
        yield


def _render(metrics: Metrics) -> bytes:
    return _CREATED.sub(b"", metrics.render())  # the client's creation timestamps vary


# -- what held ---------------------------------------------------------------------------
def test_two_metrics_on_two_registries_count_apart() -> None:
    one, two = Metrics(), Metrics()
    one.cache_hits.labels(prefix="user").inc()
    assert _render(two) == _render(Metrics()) != _render(one)


def test_a_second_metrics_on_the_same_registry_is_refused_as_on_main() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)


@pytest.mark.parametrize("namespace", ["", "acme", "gochat_eu"])
def test_another_namespace_renders_the_same_families_under_its_prefix(namespace: str) -> None:
    prefix = f"{namespace}_".encode() if namespace else b""
    expected = _render(Metrics()).replace(b"gochat_", prefix)
    assert _render(Metrics(namespace=namespace)) == expected


def test_reimporting_every_component_declaration_changes_nothing() -> None:
    before = family_module.declared()
    rendered = _render(Metrics())
    for component in COMPONENTS:
        importlib.reload(importlib.import_module(f"gochat_actors.{component}._metrics"))
    assert family_module.declared() == before
    assert list(family_module.declared()) == list(before)
    assert _render(Metrics()) == rendered


def test_a_family_declared_after_a_metrics_is_not_in_it_but_in_the_next() -> None:
    """Pins a limitation the docs do not state: a Metrics registers what was declared
    when it was made (the service's Metrics is made in open_service)."""
    early = Metrics()
    declare(Family.counter("chat_rooms_opened", "Chat rooms opened."))
    assert not hasattr(early, "chat_rooms_opened")
    assert b"gochat_chat_rooms_opened_total 0.0" in Metrics().render()


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_metrics_alone_in_a_fresh_interpreter_has_every_family() -> None:
    done = _python(
        """
        from gochat_actors.metrics import Metrics
        print(sum(1 for line in Metrics().render().decode().splitlines()
                  if line.startswith("# TYPE") and not line.endswith("_created gauge")))
        """
    )
    assert (done.returncode, done.stdout.strip()) == (0, "24"), done.stderr


def test_metrics_without_the_components_imported_is_a_clear_error() -> None:
    """The metrics package loaded without gochat_actors' __init__ (so no component)."""
    root = Path(gochat_actors.__file__).parent
    done = _python(
        f"""
        import sys, types
        package = types.ModuleType("gochat_actors")
        package.__path__ = [{str(root)!r}]
        sys.modules["gochat_actors"] = package
        from gochat_actors.metrics import Metrics
        try:
            Metrics()
        except RuntimeError as error:
            print(error)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "no family declared for 'db_connections_active'" in done.stdout


# -- defects -----------------------------------------------------------------------------
REFUSED_BY_THE_CLIENT: dict[str, tuple[str, Callable[[], Family]]] = {
    "counter named after a counter's _total": (
        "cache_hits_total",
        lambda: Family.counter("cache_hits_total", "Hits again.", "prefix"),
    ),
    "gauge named after a histogram's _count": (
        "cache_operation_duration_seconds_count",
        lambda: Family.gauge("cache_operation_duration_seconds_count", "Count."),
    ),
    "gauge named after a counter's _created": (
        "idgen_issued_created",
        lambda: Family.gauge("idgen_issued_created", "C."),
    ),
    "histogram labelled le": (
        "rooms_duration",
        lambda: Family.histogram(
            "rooms_duration", "rooms_seconds", "Rooms.", "le", buckets=SLOW_BUCKETS
        ),
    ),
    "histogram with unsorted buckets": (
        "rooms_duration",
        lambda: Family.histogram("rooms_duration", "rooms_seconds", "R.", buckets=(2.0, 1.0)),
    ),
    "reserved label": ("rooms", lambda: Family.counter("rooms", "Rooms.", "__room")),
    "unknown kind": ("rooms", lambda: Family("rooms", "summary", "Rooms.")),  # type: ignore[arg-type]
    "attribute no Python name": ("rooms-open", lambda: Family.counter("rooms-open", "R.")),
}


@pytest.mark.parametrize(
    ("attr", "make"), REFUSED_BY_THE_CLIENT.values(), ids=list(REFUSED_BY_THE_CLIENT)
)
def test_a_family_the_client_refuses_is_refused_when_declared(
    attr: str, make: Callable[[], Family]
) -> None:
    with pytest.raises(ValueError, match=re.escape(attr)):
        declare(make())
    Metrics()  # and the process still makes Metrics


@pytest.mark.parametrize("attr", ["registry", "render", "namespace", "record_cache_lookup"])
def test_a_family_named_after_a_metrics_attribute_is_refused_when_declared(attr: str) -> None:
    with pytest.raises(ValueError, match=attr):
        declare(Family.counter(attr, "Registries."))
    Metrics()


def test_a_declare_that_raises_declares_none_of_its_families() -> None:
    with pytest.raises(ValueError, match="clashes"):
        declare(
            Family.counter("rooms_opened", "Rooms opened."),
            Family.counter("cache_hits", "Not the cache's.", "prefix"),
        )
    assert "rooms_opened" not in family_module.declared()


_NAMES = ["rooms", "rooms_total", "rooms_count", "rooms_sum", "rooms_bucket", "rooms_created"]
_FAMILIES = st.builds(
    lambda kind, attr, name, labels, buckets: (kind, f"u_{attr}", name, labels, buckets),
    st.sampled_from(["counter", "gauge", "histogram"]),
    st.integers(0, 3).map(str),
    st.sampled_from([*_NAMES, "cache_hits", "cache_hits_total", "mq_lag_total"]),
    st.lists(st.sampled_from(["room", "le", "__x", "quantile"]), max_size=2, unique=True),
    st.sampled_from([SLOW_BUCKETS, (1.0,), (2.0, 1.0)]),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_FAMILIES, min_size=1, max_size=3))
def test_what_declare_accepts_metrics_registers(families: list[tuple[Any, ...]]) -> None:
    with patch.dict(family_module._DECLARED):
        for kind, attr, name, labels, buckets in families:
            try:
                family = Family(
                    attr, kind, "Help.", tuple(labels), name,
                    buckets if kind == "histogram" else (),
                )  # fmt: skip
                declare(family)
            except ValueError:
                continue  # refused when declared: what we ask for
        metrics = Metrics()
        for parsed in text_string_to_metric_families(metrics.render().decode()):
            assert parsed.samples is not None


@pytest.mark.parametrize(
    "make",
    [
        # histogram() takes (attr, name, help, *labels), counter() and gauge() (attr, help, ...):
        # the help lands in the name, the label in the help; rendered as gochat_Room_time_
        lambda: Family.histogram("rooms_duration", "Room time.", "room", buckets=SLOW_BUCKETS),
        lambda: Family("rooms", "counter", "Rooms.", name="rooms-open"),  # == rooms_open, escaped
        lambda: Family.counter("rooms", "Rooms.", "room-kind"),
    ],
    ids=["histogram help as name", "name escaped", "label escaped"],
)
def test_a_name_or_label_the_text_format_would_escape_is_refused(
    make: Callable[[], Family],
) -> None:
    with pytest.raises(ValueError, match="rooms"):
        make()
