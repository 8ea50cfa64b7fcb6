"""Health of children and of whole trees."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Health", "HealthReport"]


class Health(enum.Enum):
    """What a child says about itself: ``OK``, ``DEGRADED`` (works, not fully) or ``FAILED``."""

    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Liveness and readiness of a tree, with the reasons when either is false.

    ``live``: the tree runs and no supervisor in it is one failure away from giving up.
    ``ready``: every significant child is running and not ``FAILED``.
    ``reasons`` names each child that spoils either, as ``"path: why"``.

    Example::

        report = sup.health()
        if not report.ready:
            print("\\n".join(report.reasons))
    """

    live: bool
    ready: bool
    reasons: tuple[str, ...] = ()
