"""Adversarial review of Bridge.run_coroutine (merge 6d4534d): its contract is
run_asyncio's, for a coroutine already made."""

from __future__ import annotations

import contextvars
import gc
import inspect
from collections.abc import Generator

import pytest
import trio
import trio.testing

from gochat_actors import Bridge, BridgeNotRunning
from gochat_actors._loop_tuning import TUNING_ENV

pytestmark = pytest.mark.parametrize("tuning", ["on", "off"])

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


class _Pause:
    """An awaitable that suspends its coroutine once (driven by hand below)."""

    def __await__(self) -> Generator[None, None, None]:
        yield None


async def two_steps(log: list[str]) -> str:
    try:
        await _Pause()
        log.append("second step")
        return "done"
    finally:
        log.append("finally")


async def bridged(monkeypatch: pytest.MonkeyPatch, tuning: str) -> Bridge:
    monkeypatch.setenv(TUNING_ENV, tuning)
    return Bridge()


async def test_run_coroutine_of_a_function_not_called_is_a_type_error(
    monkeypatch: pytest.MonkeyPatch, tuning: str
) -> None:
    bridge = await bridged(monkeypatch, tuning)

    async def fetch() -> int:
        return 1

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        with pytest.raises(TypeError):
            await bridge.run_coroutine(fetch)  # type: ignore[arg-type]  # forgot the ()
        nursery.cancel_scope.cancel()


async def test_run_coroutine_stopped_bridge_with_a_non_coroutine_still_says_not_running(
    monkeypatch: pytest.MonkeyPatch, tuning: str
) -> None:
    bridge = await bridged(monkeypatch, tuning)
    with pytest.raises((BridgeNotRunning, TypeError)):
        await bridge.run_coroutine(42)  # type: ignore[arg-type]


async def test_run_coroutine_leaves_alone_a_coroutine_it_does_not_own(
    monkeypatch: pytest.MonkeyPatch, tuning: str
) -> None:
    bridge = await bridged(monkeypatch, tuning)
    log: list[str] = []
    coro = two_steps(log)
    coro.send(None)  # started by its owner, suspended at its first await
    with pytest.raises((BridgeNotRunning, RuntimeError, TypeError)):
        await bridge.run_coroutine(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_SUSPENDED, log
    coro.close()


async def test_run_coroutine_refuses_a_coroutine_already_started(
    monkeypatch: pytest.MonkeyPatch, tuning: str
) -> None:
    bridge = await bridged(monkeypatch, tuning)
    log: list[str] = []
    coro = two_steps(log)
    coro.send(None)
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        try:
            with pytest.raises((RuntimeError, TypeError)):
                await bridge.run_coroutine(coro)
            assert log == []  # its owner's next step was not run by the bridge
        finally:
            coro.close()
            nursery.cancel_scope.cancel()


async def test_run_coroutine_already_awaited_raises_like_asyncio(
    monkeypatch: pytest.MonkeyPatch, tuning: str
) -> None:
    bridge = await bridged(monkeypatch, tuning)
    log: list[str] = []
    coro = two_steps(log)
    coro.send(None)
    with pytest.raises(StopIteration):
        coro.send(None)
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
            await bridge.run_coroutine(coro)
        nursery.cancel_scope.cancel()


async def test_run_coroutine_contextvars_like_run_asyncio(
    monkeypatch: pytest.MonkeyPatch, tuning: str
) -> None:
    bridge = await bridged(monkeypatch, tuning)

    async def look() -> str:
        seen = VAR.get()
        VAR.set("set inside")
        return seen

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        VAR.set("caller")
        assert await bridge.run_coroutine(look()) == "caller"
        assert VAR.get() == "caller"
        assert await bridge.run_asyncio(look) == "caller"
        assert VAR.get() == "caller"
        nursery.cancel_scope.cancel()


async def test_run_coroutine_bridge_stops_before_the_first_step(
    monkeypatch: pytest.MonkeyPatch, tuning: str
) -> None:
    # The caller starts the crossing, the bridge is cancelled in the same tick: the
    # call fails with BridgeNotRunning (or its caller's cancellation), never a
    # "coroutine was never awaited" warning (filterwarnings=error).
    bridge = await bridged(monkeypatch, tuning)
    log: list[str] = []
    ended: list[object] = []

    async def caller() -> None:
        try:
            ended.append(await bridge.run_coroutine(two_steps(log)))
        except BridgeNotRunning as exc:
            ended.append(exc)

    async with trio.open_nursery() as outer, trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        outer.start_soon(caller)
        nursery.cancel_scope.cancel()
    assert len(ended) == 1
    gc.collect()
