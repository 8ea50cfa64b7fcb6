"""``[metrics]``: the Prometheus metrics."""

from __future__ import annotations

from pydantic import Field

from .._section import Section

__all__ = ["MetricsSettings"]


class MetricsSettings(Section):
    """The ``[metrics]`` section.

    Example::

        MetricsSettings(enabled=False)  # no /metrics endpoint
    """

    enabled: bool = Field(default=True, description="Collect metrics and serve them on `/metrics`.")
    namespace: str = Field(
        default="gochat",
        pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
        description="Prefix of every metric family name (`gochat_db_...`).",
    )
