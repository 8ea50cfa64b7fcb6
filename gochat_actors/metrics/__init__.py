"""Prometheus metrics (a registry per ``Metrics``, never the global one); ``[metrics]`` settings.

Example::

    from gochat_actors.metrics import Metrics

    metrics = Metrics()
    metrics.record_cache_lookup("user:42", hit=True)
    print(metrics.render().decode())
"""

from ._metrics import CONTENT_TYPE, OTHER_PREFIX, Metrics, key_prefix, observe_many
from ._runtime import RuntimeMetrics
from ._settings import MetricsSettings

__all__ = [
    "CONTENT_TYPE",
    "OTHER_PREFIX",
    "Metrics",
    "MetricsSettings",
    "RuntimeMetrics",
    "key_prefix",
    "observe_many",
]
