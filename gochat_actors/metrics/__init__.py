"""Prometheus metrics (a registry per ``Metrics``, never the global one); ``[metrics]`` settings.

Each component declares its families next to its code (``Family``, ``declare``, in its
``_metrics.py``); every ``Metrics`` registers what is declared.

Example::

    from gochat_actors.metrics import Metrics

    metrics = Metrics()
    metrics.record_cache_lookup("user:42", hit=True)
    print(metrics.render().decode())
"""

from ._family import FAST_BUCKETS, SLOW_BUCKETS, Family, declare
from ._metrics import CONTENT_TYPE, OTHER_PREFIX, Metrics, key_prefix, observe_many
from ._runtime import RuntimeMetrics
from ._settings import MetricsSettings

__all__ = [
    "CONTENT_TYPE",
    "FAST_BUCKETS",
    "OTHER_PREFIX",
    "SLOW_BUCKETS",
    "Family",
    "Metrics",
    "MetricsSettings",
    "RuntimeMetrics",
    "declare",
    "key_prefix",
    "observe_many",
]
