"""``[http]``: the endpoints /metrics, /healthz, /readyz, /debug/tree."""

from __future__ import annotations

from pydantic import Field

from .._section import Section

__all__ = ["HTTPSettings"]


class HTTPSettings(Section):
    """The ``[http]`` section.

    Example::

        HTTPSettings(port=0)  # any free port (tests)
    """

    enabled: bool = Field(default=True, description="Serve the HTTP endpoints.")
    host: str = Field(default="127.0.0.1", min_length=1, description="Address to bind.")
    port: int = Field(
        default=9464, ge=0, le=65535, description="Port to bind; 0 picks a free port."
    )
