"""What the machine-ID keeper drives: the generator's lease on a machine ID, as a
Protocol, so that the keeper (``_keeper.py``) and the generator (``_generator.py``)
import nothing of each other. ``IdGenerator`` hands the keeper a ``GeneratorLease``."""

from __future__ import annotations

import random
from typing import Protocol

from ._layout import SnowflakeLayout
from ._protocol import EtcdBackend
from ._settings import IdGenSettings

__all__ = ["LeaseHolder"]


class LeaseHolder(Protocol):
    """The generator, as its keeper sees it: clocks, the lease window, the counters."""

    running: bool
    """True while a keeper runs (one per generator)."""

    @property
    def settings(self) -> IdGenSettings:
        """The ``[idgen]`` settings."""
        ...

    @property
    def layout(self) -> SnowflakeLayout:
        """How an ID's bits are laid out."""
        ...

    @property
    def owner(self) -> str:
        """This generator's name in etcd (host, pid, random: unique per instance)."""
        ...

    @property
    def static(self) -> bool:
        """A static machine ID: no etcd, no keeper work."""
        ...

    @property
    def ready(self) -> bool:
        """IDs can be issued now."""
        ...

    @property
    def backend(self) -> EtcdBackend | None:
        """The etcd backend given to the generator (None: build one from the settings)."""
        ...

    @property
    def request_timeout(self) -> float:
        """The bound of one etcd request, in seconds."""
        ...

    @property
    def machine_id(self) -> int | None:
        """The machine ID last installed, held or not."""
        ...

    @property
    def rng(self) -> random.Random:
        """The generator's random stream (seeded: a run replays), for the keeper's draws."""
        ...

    @property
    def valid_until_ns(self) -> int:
        """The monotonic deadline until which IDs are issued."""
        ...

    @property
    def last_ms(self) -> int:
        """The last Unix millisecond an ID was issued in, under any machine ID."""
        ...

    def mono(self) -> int:
        """Monotonic nanoseconds on the generator's clock."""
        ...

    def now_ms(self) -> int:
        """Unix milliseconds on the generator's clock."""
        ...

    def install(self, machine_id: int, floor_ms: int) -> None:
        """Issue under ``machine_id`` from millisecond ``floor_ms`` on."""
        ...

    def extend(self, valid_until_ns: int) -> None:
        """Allow issuing until the monotonic deadline ``valid_until_ns``."""
        ...

    def invalidate(self, reason: str) -> None:
        """Stop issuing at once; ``reason`` is what callers are told."""
        ...

    def flush_issued(self) -> None:
        """Bring the issued-IDs counter up to date."""
        ...

    def count_renewal(self) -> None:
        """One renewal passed."""
        ...

    def count_renewal_failure(self) -> None:
        """One renewal (or claim) failed."""
        ...

    def count_acquisition(self) -> None:
        """One machine ID was acquired."""
        ...
