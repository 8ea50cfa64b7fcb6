"""The bridge on Python 3.14's asyncio surface, simulated in a subprocess.

3.14 is not installable on these machines; what it changed for trio-asyncio is put in
place by hand before anything imports it: the child-watcher API removed, the policy
classes renamed or deprecated (served with a DeprecationWarning), the policy calls
warning, and a task's step refused unless its loop is the thread's running loop (3.14's
C tasks check that; here the Python tasks do: without the bridge setting it, a crossing
never ends, which is why no test here shows that). The subprocess runs with ``-W error``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from gochat_actors._loop_tuning import TUNING_ENV

SIMULATE_314 = textwrap.dedent(
    """
    import asyncio, asyncio.events as events, asyncio.tasks as tasks
    import asyncio.unix_events as unix_events, warnings
    import _asyncio

    # The child-watcher API, removed in 3.14.
    for name in ("AbstractChildWatcher", "SafeChildWatcher", "FastChildWatcher",
                 "MultiLoopChildWatcher", "ThreadedChildWatcher", "PidfdChildWatcher",
                 "get_child_watcher", "set_child_watcher"):
        for module in (asyncio, events, unix_events):
            if name in vars(module):
                delattr(module, name)
    for cls in (events.AbstractEventLoopPolicy, unix_events._UnixDefaultEventLoopPolicy):
        for name in ("get_child_watcher", "set_child_watcher", "_init_watcher"):
            if name in vars(cls):
                delattr(cls, name)

    # The policy classes: renamed, or deprecated (asyncio's module __getattr__ warns).
    events._BaseDefaultEventLoopPolicy = events.BaseDefaultEventLoopPolicy
    del events.BaseDefaultEventLoopPolicy
    deprecated = {
        "DefaultEventLoopPolicy": unix_events.DefaultEventLoopPolicy,
        "AbstractEventLoopPolicy": events.AbstractEventLoopPolicy,
    }
    unix_events._DefaultEventLoopPolicy = unix_events.DefaultEventLoopPolicy
    del unix_events.DefaultEventLoopPolicy, asyncio.DefaultEventLoopPolicy
    del asyncio.AbstractEventLoopPolicy

    def module_getattr(name):
        if name in deprecated:
            warnings.warn(f"asyncio.{name} is deprecated", DeprecationWarning, stacklevel=2)
            return deprecated[name]
        raise AttributeError(f"module 'asyncio' has no attribute {name!r}")

    asyncio.__getattr__ = module_getattr

    # The policy calls warn; their private twins do not.
    events._get_event_loop_policy = get_policy = events.get_event_loop_policy
    events._set_event_loop_policy = set_policy = events.set_event_loop_policy

    def warning_get():
        warnings.warn("get_event_loop_policy is deprecated", DeprecationWarning, stacklevel=2)
        return get_policy()

    def warning_set(policy):
        warnings.warn("set_event_loop_policy is deprecated", DeprecationWarning, stacklevel=2)
        set_policy(policy)

    events.get_event_loop_policy = asyncio.get_event_loop_policy = warning_get
    events.set_event_loop_policy = asyncio.set_event_loop_policy = warning_set

    # A task's step needs its loop to be the thread's running loop.
    c_enter, c_leave = tasks._enter_task, tasks._leave_task

    checked = []

    def check(loop):
        checked.append(loop)
        if _asyncio._get_running_loop() is not loop:
            raise RuntimeError(f"loop {loop!r} is not the running loop")

    def enter(loop, task):
        check(loop)
        c_enter(loop, task)

    def leave(loop, task):
        check(loop)
        c_leave(loop, task)

    tasks._enter_task, tasks._leave_task = enter, leave
    asyncio.Task = tasks.Task = tasks._PyTask
    """
)

BRIDGE_IN_A_SUPERVISOR = textwrap.dedent(
    """
    import socket
    import trio
    from gochat_actors import Bridge
    from supervisors import ChildSpec, open_supervisor

    async def on_asyncio(x):
        loop = asyncio.get_running_loop()
        assert isinstance(asyncio.current_task(), tasks._PyTask)
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)  # a timer
        left, right = socket.socketpair()  # a read: the loop's reader task
        with left, right:
            left.setblocking(False)
            loop.call_soon(right.send, b"x")
            assert await loop.sock_recv(left, 1) == b"x"
        return x * 2

    async def main():
        bridge = Bridge()
        async with open_supervisor([ChildSpec("bridge", bridge.run)]):
            assert await bridge.run_asyncio(on_asyncio, 21) == 42
            # The caller cancelled: the asyncio task is cancelled and awaited.
            started, ended = trio.Event(), []

            async def sleeper():
                started.set()
                try:
                    await asyncio.sleep(3600)
                finally:
                    ended.append(asyncio.current_task().cancelling())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(bridge.run_asyncio, sleeper)
                await started.wait()
                nursery.cancel_scope.cancel()
            assert ended == [1], ended
        assert not hasattr(asyncio, "AbstractChildWatcher")  # we added none for good
        assert checked  # the task steps went through the 3.14 check
        print("crossed")

    trio.run(main)
    """
)


def run_python(code: str, *, tuning: str = "on") -> subprocess.CompletedProcess[str]:
    # Python 3.14 needs the bridge's tuning: `make test`'s untuned pass must not reach here.
    env = {**os.environ, TUNING_ENV: tuning}
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )


def test_the_bridge_starts_and_crosses_on_python_314s_asyncio() -> None:
    result = run_python(
        SIMULATE_314
        + "import gochat_actors._aiocompat as compat\n"
        + "compat.TASKS_NEED_RUNNING_LOOP = True  # what 3.14 sets: the bridge reads it\n"
        + BRIDGE_IN_A_SUPERVISOR
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["crossed"]


def test_the_tuning_switched_off_on_314_is_a_clear_error() -> None:
    result = run_python(
        SIMULATE_314
        + "import gochat_actors._aiocompat as compat\n"
        + "compat.TASKS_NEED_RUNNING_LOOP = True\n"
        + BRIDGE_IN_A_SUPERVISOR,
        tuning="off",
    )
    assert result.returncode != 0
    assert "Python 3.14's asyncio needs the bridge's tuning" in result.stderr


def test_the_simulation_breaks_a_plain_trio_asyncio_import() -> None:
    # trio-asyncio 0.16's import trips on each change in turn (the order of its module):
    # each run below puts back what stopped the one before.
    fixes = ""
    for fix, error in [
        (
            "events.BaseDefaultEventLoopPolicy = events._BaseDefaultEventLoopPolicy\n",
            "has no attribute 'BaseDefaultEventLoopPolicy'",
        ),
        (
            "asyncio.DefaultEventLoopPolicy = deprecated['DefaultEventLoopPolicy']\n",
            "DeprecationWarning: asyncio.DefaultEventLoopPolicy is deprecated",
        ),
        (
            "events.get_event_loop_policy = get_policy\n"
            "events.set_event_loop_policy = set_policy\n",
            "DeprecationWarning: get_event_loop_policy is deprecated",
        ),
        ("", "has no attribute 'AbstractChildWatcher'"),
    ]:
        result = run_python(SIMULATE_314 + fixes + "import trio_asyncio\n")
        assert result.returncode != 0
        assert error in result.stderr
        fixes += fix


def test_run_coroutine_on_python_314s_simulated_asyncio() -> None:
    """Bridge.run_coroutine on a simulated 3.14 (tuned: 3.14 needs the tuning)."""
    script = textwrap.dedent(
        """
        import trio
        from gochat_actors import Bridge

        async def double(x):
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            return x * 2

        async def forever(ended):
            try:
                await asyncio.sleep(3600)
            finally:
                ended.append(asyncio.current_task().cancelling())

        async def main():
            bridge = Bridge()
            async with trio.open_nursery() as outer:
                await outer.start(bridge.run)
                assert await bridge.run_coroutine(double(21)) == 42
                ended = []
                with trio.move_on_after(0.01):
                    await bridge.run_coroutine(forever(ended))
                assert ended == [1], ended
                outer.cancel_scope.cancel()
            assert checked
            print("crossed")

        trio.run(main)
        """
    )
    result = run_python(
        SIMULATE_314
        + "import gochat_actors._aiocompat as compat\n"
        + "compat.TASKS_NEED_RUNNING_LOOP = True\n"
        + script
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["crossed"]
