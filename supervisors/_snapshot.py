"""Introspection: a nested, JSON-serialisable picture of a running tree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from ._child import Child, ChildState

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["snapshot"]


def _error_text(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _child_node(child: Child, now: float) -> dict[str, Any]:
    started_at = child.started_at
    running = child.state is ChildState.RUNNING and started_at is not None
    node: dict[str, Any] = {
        "id": child.id,
        "path": child.path,
        "kind": child.spec.kind,
        "state": child.state.value,
        "restarts": child.restarts,
        "last_error": _error_text(child.last_error),
        "uptime": round(now - started_at, 3) if running and started_at is not None else 0.0,
        "significant": child.spec.significant,
        "health": {"status": child.health.value, "reason": child.health_reason},
        "mailbox": None,
        "children": [],
    }
    mailbox = child.mailbox
    if mailbox is not None:
        node["mailbox"] = {"depth": mailbox.depth, "peak": mailbox.peak, "size": mailbox.size}
    handle = child.handle
    if handle is not None and handle.subtree is not None and not handle.finished:
        sub = snapshot(handle.subtree)
        node["kind"] = "supervisor"
        node["strategy"] = sub["strategy"]
        node["children"] = sub["children"]
        node["live"] = sub["live"]
        node["ready"] = sub["ready"]
    return node


def snapshot(sup: Supervisor) -> dict[str, Any]:
    """The tree under ``sup`` as plain dicts, lists, strings and numbers.

    Each node: ``id``, ``path``, ``kind`` (worker/actor/supervisor/component), ``state``,
    ``restarts``, ``last_error`` (text), ``uptime`` (seconds), ``health``
    (``{"status", "reason"}``), ``mailbox`` (``{"depth", "peak", "size"}`` or ``None``)
    and ``children``. The root also has ``live``, ``ready`` and ``reasons``.

    Example::

        json.dumps(sup.snapshot())
    """
    now = trio.current_time()
    health = sup.health()
    return {
        "id": sup.name or sup.path or "<root>",
        "path": sup.path,
        "kind": "supervisor",
        "state": "running" if sup.running else "stopped",
        "strategy": sup.strategy.value,
        "restarts": sum(c.restarts for c in sup.children_records()),
        "live": health.live,
        "ready": health.ready,
        "reasons": list(health.reasons),
        "children": [_child_node(c, now) for c in sup.children_records()],
    }
