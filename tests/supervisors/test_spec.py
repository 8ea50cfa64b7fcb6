"""ChildSpec and Supervisor construction: bad input is refused, naming what is wrong."""

from __future__ import annotations

import pytest
import trio

from supervisors import Backoff, ChildSpec, Restart, Strategy, Supervisor


async def ok(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()


def not_async() -> None:
    pass


def test_target_must_be_async_callable() -> None:
    with pytest.raises(TypeError, match=r"child 'x': target must be an async callable"):
        ChildSpec("x", not_async)


@pytest.mark.parametrize("bad", ["", "a/b", 3])
def test_id_must_be_a_plain_string(bad: object) -> None:
    with pytest.raises(ValueError, match="child id"):
        ChildSpec(bad, ok)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("shutdown", -1.0, ValueError),
        ("shutdown", float("inf"), ValueError),
        ("shutdown", "1", TypeError),
        ("stall_timeout", 0, ValueError),
        ("start_timeout", -2, ValueError),
    ],
)
def test_negative_or_odd_budgets(field: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=rf"child 'x': {field}"):
        ChildSpec("x", ok, **{field: value})  # type: ignore[arg-type]


def test_restart_must_be_enum() -> None:
    with pytest.raises(TypeError, match="restart must be a Restart"):
        ChildSpec("x", ok, restart="permanent")  # type: ignore[arg-type]


def test_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="duplicate child id 'a'"):
        Supervisor([ChildSpec("a", ok), ChildSpec("a", ok)])


def test_unknown_dependency() -> None:
    with pytest.raises(ValueError, match="child 'b': depends_on names unknown child 'zz'"):
        Supervisor([ChildSpec("a", ok), ChildSpec("b", ok, depends_on=("zz",))])


def test_cyclic_dependency_names_the_cycle() -> None:
    specs = [
        ChildSpec("a", ok, depends_on=("c",)),
        ChildSpec("b", ok, depends_on=("a",)),
        ChildSpec("c", ok, depends_on=("b",)),
    ]
    with pytest.raises(ValueError, match=r"cyclic depends_on: a -> c -> b -> a"):
        Supervisor(specs)


def test_self_dependency() -> None:
    with pytest.raises(ValueError, match="depends_on names the child itself"):
        ChildSpec("a", ok, depends_on=("a",))


def test_dependencies_reorder_start_order() -> None:
    sup = Supervisor([ChildSpec("app", ok, depends_on=("db",)), ChildSpec("db", ok)])
    assert [s.id for s in sup._specs] == ["db", "app"]


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_restarts": -1}, ValueError, "max_restarts must be >= 0"),
        ({"max_restarts": 1.5}, TypeError, "max_restarts must be an int"),
        ({"max_seconds": 0}, ValueError, "max_seconds must be a finite number > 0"),
        ({"strategy": "one_for_one"}, TypeError, "strategy must be"),
        ({"backoff": 1.0}, TypeError, "backoff must be"),
    ],
)
def test_supervisor_options(options: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Supervisor([], **options)  # type: ignore[arg-type]


def test_children_must_be_specs() -> None:
    with pytest.raises(TypeError, match="ChildSpec instances"):
        Supervisor([ok])  # type: ignore[list-item]


def test_spec_defaults() -> None:
    spec = ChildSpec("a", ok, args=["x"])  # type: ignore[arg-type]
    assert spec.args == ("x",)
    assert spec.restart is Restart.PERMANENT
    assert spec.shutdown == 5.0
    assert Strategy.ONE_FOR_ONE.value == "one_for_one"
    assert Backoff().initial == 0.1
