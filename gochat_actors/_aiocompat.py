"""What trio-asyncio 0.16 needs from asyncio that Python 3.12-3.14 deprecated or removed.

trio-asyncio's import subclasses ``asyncio.AbstractChildWatcher`` (deprecated in 3.12,
removed in 3.14: its open issue #152), subclasses ``asyncio.events.BaseDefaultEventLoopPolicy``
and ``asyncio.DefaultEventLoopPolicy`` (the first renamed in 3.14, the second deprecated
then), and reads and sets the event-loop policy through the public calls that 3.14
deprecates (removal planned for 3.16). :func:`load_trio_asyncio` imports it with those
names in place for the import only: a stand-in child-watcher base (trio-asyncio's
watcher is only ever duck-typed by asyncio), the renamed policy classes, and the
policy calls without their deprecation warning. Afterwards asyncio's surface is what
it was (a name we added is removed again), so other libraries that probe asyncio for
the child-watcher API still see it missing on 3.14.

Python 3.14 also requires an asyncio task's loop to be the thread's running loop
(``asyncio._set_running_loop``) whenever one of its steps runs; trio-asyncio never sets
it. :data:`TASKS_NEED_RUNNING_LOOP` says so, and the bridge sets it around every
callback it runs (:func:`running_loop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

__all__ = [
    "TASKS_NEED_RUNNING_LOOP",
    "load_trio_asyncio",
    "set_thread_running_loop",
    "thread_running_loop",
]

TASKS_NEED_RUNNING_LOOP = sys.version_info >= (3, 14)
"""True where a task's step fails unless its loop is the thread's running loop (3.14)."""

_MISSING = object()


class _ChildWatcherBase:
    """The base trio-asyncio's ``TrioChildWatcher`` gets in place of asyncio's
    ``AbstractChildWatcher``: asyncio (3.11-3.13) only calls its methods, never checks
    its type, outside ``set_child_watcher`` (which trio-asyncio's policy replaces)."""

    def __enter__(self) -> Any:  # pragma: no cover - the subclass defines both
        return self

    def __exit__(self, *exc_info: object) -> None:  # pragma: no cover
        return None


def _default_policy_class() -> type:
    """The platform's default policy class, without the 3.14 deprecation warning that
    ``asyncio.DefaultEventLoopPolicy`` (served by asyncio's module ``__getattr__``) gives."""
    found = vars(asyncio).get("DefaultEventLoopPolicy")
    if found is not None:
        return found  # type: ignore[no-any-return]
    module = sys.modules[
        "asyncio.windows_events" if sys.platform == "win32" else "asyncio.unix_events"
    ]
    return getattr(module, "_DefaultEventLoopPolicy")  # type: ignore[no-any-return]  # noqa: B009


@contextlib.contextmanager
def _surface_for_import() -> Iterator[None]:
    """asyncio with the names trio-asyncio's import uses, for the ``with`` block only."""
    events: Any = asyncio.events
    added: list[tuple[Any, str, object, object]] = []  # (module, name, old, ours)

    def put(module: Any, name: str, value: object) -> None:
        added.append((module, name, vars(module).get(name, _MISSING), value))
        setattr(module, name, value)

    if sys.version_info >= (3, 12) or not hasattr(asyncio, "AbstractChildWatcher"):
        # Deprecated (subclassing warns) from 3.12, gone in 3.14.
        put(asyncio, "AbstractChildWatcher", _ChildWatcherBase)
    if not hasattr(events, "BaseDefaultEventLoopPolicy"):  # 3.14: a private name
        put(events, "BaseDefaultEventLoopPolicy", events._BaseDefaultEventLoopPolicy)
    if "DefaultEventLoopPolicy" not in vars(asyncio):  # 3.14: deprecated, via __getattr__
        put(asyncio, "DefaultEventLoopPolicy", _default_policy_class())
    if hasattr(events, "_get_event_loop_policy"):  # 3.14: the public calls warn
        # trio-asyncio keeps these as "the original policy calls" and replaces the public
        # names with its own (which do not warn), as it does on every version.
        put(events, "get_event_loop_policy", events._get_event_loop_policy)
        put(events, "set_event_loop_policy", events._set_event_loop_policy)
    try:
        yield
    finally:
        for module, name, old, ours in reversed(added):
            if vars(module).get(name, _MISSING) is not ours:
                continue  # trio-asyncio replaced it with its own: that one stays
            if old is _MISSING:
                delattr(module, name)
            else:
                setattr(module, name, old)


def load_trio_asyncio() -> ModuleType:
    """``import trio_asyncio``, on any Python from 3.11 on (see the module's docstring).

    Use this, not a plain import, wherever trio-asyncio may be imported first.

    Example::

        trio_asyncio = load_trio_asyncio()
        async with trio_asyncio.open_loop() as loop: ...
    """
    module = sys.modules.get("trio_asyncio")
    if module is not None:
        return module
    with _surface_for_import():
        return importlib.import_module("trio_asyncio")


def _running_loop_calls() -> tuple[Any, Any]:
    """asyncio's own get/set of the thread's running loop: trio-asyncio replaces the
    getter in ``asyncio.events`` with one that looks at the trio task instead."""
    try:
        import _asyncio  # the C accelerator: what the C task's step checks
    except ImportError:  # pragma: no cover - a Python without it
        events: Any = asyncio.events
        return events._py__get_running_loop, events._py__set_running_loop
    return _asyncio._get_running_loop, _asyncio._set_running_loop


# The thread's running loop as asyncio's C task sees it (None when there is none), and
# its setter (as asyncio's own loop does while it runs): the C functions themselves,
# since the bridge calls them around every callback on 3.14.
thread_running_loop, set_thread_running_loop = _running_loop_calls()
