"""Prometheus metrics; ``[metrics]`` settings."""

from ._settings import MetricsSettings

__all__ = ["MetricsSettings"]
