"""A slot holding the live incarnation of something an actor owns (a client, a pool).

A component's facade is created once; its actor fills the slot when ready and empties
it when it stops or crashes. Callers ``await slot.get(timeout)``: they get the current
value at once, or wait for the next incarnation up to their timeout.
"""

from __future__ import annotations

import math
from typing import Generic, TypeVar

import trio

from ._exceptions import ComponentUnavailable

__all__ = ["Slot"]

T = TypeVar("T")


class Slot(Generic[T]):
    """The current value of a restarting resource, or nothing while it is down.

    Example::

        slot: Slot[Client] = Slot("cache", error=CacheUnavailable)
        slot.fill(client)                      # in the actor, once connected
        client = await slot.get(timeout=1.0)   # in the facade
        slot.clear()                           # in the actor's cleanup
    """

    __slots__ = ("_changed", "_error", "_name", "_value")

    def __init__(
        self, name: str, *, error: type[ComponentUnavailable] = ComponentUnavailable
    ) -> None:
        self._name = name
        self._error = error
        self._value: T | None = None
        self._changed = trio.Event()

    @property
    def value(self) -> T | None:
        """The current value, or ``None`` while the owner is down."""
        return self._value

    def fill(self, value: T) -> None:
        """Publish the owner's new incarnation and wake every waiter."""
        self._value = value
        self._changed.set()
        self._changed = trio.Event()

    def clear(self) -> None:
        """The owner is down: later ``get`` calls wait for the next ``fill``."""
        self._value = None

    def get_nowait(self) -> T:
        """The current value, or raise the slot's error at once."""
        value = self._value
        if value is None:
            raise self._error(f"{self._name} is not running")
        return value

    async def get(self, timeout: float = math.inf) -> T:
        """The current value, waiting up to ``timeout`` seconds for one to appear."""
        value = self._value
        if value is not None:
            return value
        with trio.move_on_after(timeout):
            while self._value is None:
                await self._changed.wait()
            return self._value
        raise self._error(f"{self._name} is not running (waited {timeout:g}s)")
