"""``RuntimeMetrics``: the runtime families, kept up to date from a supervision tree."""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

import trio

from supervisors import ChildRestarting, ChildSpec, ChildState, Event, Supervisor, progress

from .._tree import tree_root
from ._family import Family, declare
from ._metrics import OTHER_PREFIX, Metrics

__all__ = ["FAMILIES", "RuntimeMetrics"]

FAMILIES = declare(
    Family.counter("actor_restarts", "Restarts of a supervised child.", "child"),
    Family.gauge("actor_mailbox_depth", "Messages waiting in an actor's mailbox.", "child"),
    Family.gauge("supervisor_children", "Supervised children by state.", "state"),
)


class _Shared:
    """What every RuntimeMetrics of one Metrics object shares: the ``child`` labels in
    use, and which trees already have their restarts counted (so none twice)."""

    __slots__ = ("labels", "mailbox_labels", "trees")

    def __init__(self) -> None:
        self.labels: set[str] = set()
        self.mailbox_labels: set[str] = set()
        # tree root -> [unsubscribe, number of attach() calls holding it]
        self.trees: weakref.WeakKeyDictionary[Supervisor, list[Any]] = weakref.WeakKeyDictionary()


_SHARED: weakref.WeakKeyDictionary[Metrics, _Shared] = weakref.WeakKeyDictionary()


class RuntimeMetrics:
    """Feeds ``gochat_actor_restarts_total{child}``, ``gochat_actor_mailbox_depth{child}``
    and ``gochat_supervisor_children{state}`` of ``metrics`` from a supervision tree.

    Run :meth:`spec` in the tree: it counts restarts (from
    :class:`~supervisors.ChildRestarting` events) and samples ``snapshot()`` every
    ``interval`` seconds (mailbox depths, children by state) for ``supervisor``'s tree,
    or (``None``) the whole tree it runs in. Or drive it by hand with :meth:`attach`
    and :meth:`sample`. The ``child`` label is the child's path; past ``max_children``
    distinct paths, new ones count as ``"_other"``, so series stay bounded. Restarts of
    one tree are counted once per ``Metrics``, however many attach to it (the HTTP
    endpoints also attach, and sample on every scrape).

    Example::

        runtime = RuntimeMetrics(metrics)
        children.append(runtime.spec("metrics"))
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        supervisor: Supervisor | None = None,
        interval: float = 5.0,
        max_children: int = 500,
    ) -> None:
        if max_children < 1:
            raise ValueError(f"max_children must be >= 1, got {max_children!r}")
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"interval must be a finite number > 0, got {interval!r}")
        self.metrics = metrics
        self.supervisor = supervisor
        self.interval = interval
        self.max_children = max_children
        shared = _SHARED.get(metrics)
        if shared is None:
            shared = _SHARED[metrics] = _Shared()
        self._shared = shared

    # -- the child ---------------------------------------------------------------------
    def spec(self, id: str = "metrics", **spec_options: Any) -> ChildSpec:
        """The child that keeps the runtime families up to date; options go to ``ChildSpec``.

        It is not significant for readiness unless ``significant=True`` is given.

        Example::

            children.append(RuntimeMetrics(metrics).spec("metrics"))
        """
        spec_options.setdefault("significant", False)
        spec_options.setdefault("shutdown", 1.0)
        return ChildSpec(id, self.run, **spec_options)

    async def run(
        self, *, task_status: trio.TaskStatus[RuntimeMetrics] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Attach to the tree, report ready, then sample every ``interval`` seconds.

        Example::

            await nursery.start(RuntimeMetrics(metrics, supervisor=sup).run)
        """
        root = self.supervisor if self.supervisor is not None else tree_root("RuntimeMetrics")
        detach = self.attach(root)
        try:
            self.sample(root.snapshot())
            task_status.started(self)
            while True:
                await trio.sleep(self.interval)
                self.sample(root.snapshot())
                progress()
        finally:
            detach()

    # -- by hand -----------------------------------------------------------------------
    def attach(self, sup: Supervisor) -> Callable[[], None]:
        """Count the restarts of ``sup``'s tree (once per ``Metrics``, however many
        attach); returns the function that detaches again.

        Example::

            detach = runtime.attach(sup)
            ...
            detach()
        """
        trees = self._shared.trees
        held = trees.get(sup)
        if held is None:
            held = trees[sup] = [sup.subscribe(self._on_event), 0]
        held[1] += 1
        detached = False

        def detach() -> None:
            nonlocal detached
            if detached:
                return
            detached = True
            held[1] -= 1
            if held[1] == 0:
                held[0]()
                if trees.get(sup) is held:
                    del trees[sup]

        return detach

    def label(self, path: str) -> str:
        """The ``child`` label of ``path``: itself while fewer than ``max_children``
        paths are in use, else ``"_other"``.

        Example::

            runtime.label("db/replica-1")   # 'db/replica-1'
        """
        labels = self._shared.labels
        if path in labels:
            return path
        if len(labels) >= self.max_children:
            return OTHER_PREFIX
        labels.add(path)
        return path

    def _on_event(self, event: Event) -> None:
        if isinstance(event, ChildRestarting):
            self.metrics.actor_restarts.labels(child=self.label(event.path)).inc()

    def sample(self, snapshot: Mapping[str, Any]) -> None:
        """Set the mailbox depths and the children-by-state counts from a snapshot.

        Every state gets a value (0 when no child is in it); the mailbox series of
        children that are gone are removed.

        Example::

            runtime.sample(sup.snapshot())
        """
        counts = dict.fromkeys((state.value for state in ChildState), 0)
        depths: dict[str, int] = {}
        for node in _descendants(snapshot):
            state = node.get("state")
            if isinstance(state, str) and state in counts:
                counts[state] += 1
            mailbox = node.get("mailbox")
            if isinstance(mailbox, Mapping):
                label = self.label(str(node.get("path", "")))
                depths[label] = depths.get(label, 0) + int(mailbox.get("depth", 0))
        for state, count in counts.items():
            self.metrics.supervisor_children.labels(state=state).set(count)
        gauge = self.metrics.actor_mailbox_depth
        shared = self._shared
        for label in shared.mailbox_labels - depths.keys():
            gauge.remove(label)
        for label, depth in depths.items():
            gauge.labels(child=label).set(depth)
        shared.mailbox_labels = set(depths)

    def __repr__(self) -> str:
        return f"<RuntimeMetrics {self.metrics!r} every {self.interval:g}s>"


def _descendants(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for child in node.get("children", ()):
        yield child
        yield from _descendants(child)
