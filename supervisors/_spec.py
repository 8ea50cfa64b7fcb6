"""What a supervisor needs to know about a child: :class:`ChildSpec` and its enums."""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

__all__ = ["DEFAULT_START_TIMEOUT", "ChildSpec", "Restart", "Strategy"]

DEFAULT_START_TIMEOUT = 30.0
"""Seconds a child has to call ``task_status.started()`` unless its spec says otherwise."""


class Restart(enum.Enum):
    """When a child that stopped is started again.

    PERMANENT: always (a normal return is restarted too, and logged).
    TRANSIENT: only after an exception (and when a sibling's failure stops it).
    TEMPORARY: never (a sibling's failure that stops it removes its spec, as in OTP).
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    """Which children a failure takes down with it.

    ONE_FOR_ONE: only the failed child (and whatever ``depends_on`` it).
    ONE_FOR_ALL: every child. REST_FOR_ONE: the failed child and those started after it.
    """

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


def is_async_callable(obj: object) -> bool:
    """True for an ``async def`` function, a bound method of one, a partial of one, or an
    object whose ``__call__`` is one."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or (
        callable(obj) and inspect.iscoroutinefunction(getattr(obj, "__call__", None))  # noqa: B004
    )


_TAKES_STATUS: weakref.WeakKeyDictionary[object, bool] = weakref.WeakKeyDictionary()


def _cache_key(target: object) -> object | None:
    if inspect.isfunction(target):
        return target
    if inspect.ismethod(target):
        return target.__func__
    if isinstance(target, functools.partial):
        return None
    return getattr(type(target), "__call__", None)  # noqa: B004


def takes_task_status(target: Callable[..., Any]) -> bool:
    """Whether ``target`` accepts a ``task_status`` keyword (cached per function)."""
    key = _cache_key(target)
    if key is not None:
        cached = _TAKES_STATUS.get(key)
        if cached is not None:
            return cached
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # builtins, odd callables: assume the trio convention
        result = True
    else:
        result = "task_status" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
    with contextlib.suppress(TypeError):
        _TAKES_STATUS[key] = result
    return result


def _check_budget(child: str, name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"child {child!r}: {name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"child {child!r}: {name} must be a finite number >= 0, got {value!r}")
    if optional and value == 0:
        raise ValueError(f"child {child!r}: {name} must be > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to run one child: ``target(*args, task_status=...)``.

    ``shutdown`` is the budget (seconds) for a graceful stop before the child is reported
    as overstaying. ``depends_on`` names siblings this child needs: when one of them
    fails, this child is stopped first and started again once it is ready.
    ``stall_timeout`` arms the progress watchdog; ``start_timeout`` bounds the time to
    ``started()`` (default :data:`DEFAULT_START_TIMEOUT`; ``None``: no limit);
    ``significant=False`` keeps the child out of readiness. ``kind`` is what
    introspection shows (``"worker"``, ``"actor"``, ``"supervisor"``, ``"component"``,
    ``"chaos"``, or your own word); ``meta`` is free data for tools (an actor's
    ``"mailbox"`` there is shown by :meth:`Supervisor.snapshot`).

    Example::

        ChildSpec("cache", cache.run, restart=Restart.PERMANENT, shutdown=2.0)
    """

    id: str
    target: Callable[..., Any]
    args: tuple[Any, ...] = ()
    _: KW_ONLY
    restart: Restart = Restart.PERMANENT
    shutdown: float = 5.0
    depends_on: tuple[str, ...] = ()
    significant: bool = True
    stall_timeout: float | None = None
    start_timeout: float | None = DEFAULT_START_TIMEOUT
    kind: str = "worker"
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or "/" in self.id:
            raise ValueError(f"child id must be a non-empty string without '/', got {self.id!r}")
        if not is_async_callable(self.target):
            raise TypeError(
                f"child {self.id!r}: target must be an async callable "
                f"(async def f(*args, task_status=...)), got {self.target!r}"
            )
        args: object = self.args
        if not isinstance(args, tuple):
            object.__setattr__(self, "args", tuple(self.args))
        restart: object = self.restart
        if not isinstance(restart, Restart):
            raise TypeError(f"child {self.id!r}: restart must be a Restart, got {self.restart!r}")
        _check_budget(self.id, "shutdown", self.shutdown)
        _check_budget(self.id, "stall_timeout", self.stall_timeout, optional=True)
        _check_budget(self.id, "start_timeout", self.start_timeout, optional=True)
        given: object = self.depends_on
        deps = (given,) if isinstance(given, str) else tuple(self.depends_on)
        object.__setattr__(self, "depends_on", deps)
        for dep in deps:
            if not isinstance(dep, str) or not dep:
                raise TypeError(f"child {self.id!r}: depends_on entries must be ids, got {dep!r}")
            if dep == self.id:
                raise ValueError(f"child {self.id!r}: depends_on names the child itself")


def order_specs(specs: Iterable[ChildSpec], existing: Sequence[str] = ()) -> list[ChildSpec]:
    """Check ids are unique and ``depends_on`` resolves, then order the specs so that every
    child comes after what it depends on (otherwise keeping the given order).

    Raises ``ValueError`` naming the child and the field on duplicates, unknown or cyclic
    dependencies, ``TypeError`` when an entry is not a :class:`ChildSpec`.
    """
    given = list(specs)
    by_id: dict[str, ChildSpec] = {}
    for spec in given:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"children must be ChildSpec instances, got {spec!r}")
        if spec.id in by_id or spec.id in existing:
            raise ValueError(f"duplicate child id {spec.id!r}")
        by_id[spec.id] = spec
    known = set(by_id) | set(existing)
    for spec in given:
        for dep in spec.depends_on:
            if dep not in known:
                raise ValueError(f"child {spec.id!r}: depends_on names unknown child {dep!r}")
    ordered: list[ChildSpec] = []
    placed: set[str] = set(existing)
    visiting: list[str] = []

    def place(spec: ChildSpec) -> None:
        if spec.id in placed:
            return
        if spec.id in visiting:
            cycle = [*visiting[visiting.index(spec.id) :], spec.id]
            raise ValueError(f"child {spec.id!r}: cyclic depends_on: {' -> '.join(cycle)}")
        visiting.append(spec.id)
        for dep in spec.depends_on:
            if dep in by_id:
                place(by_id[dep])
        visiting.pop()
        placed.add(spec.id)
        ordered.append(spec)

    for spec in given:
        place(spec)
    return ordered
