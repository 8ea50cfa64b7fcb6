"""``[service]``: who this process is (the composition root, service/, reads it)."""

from __future__ import annotations

from pydantic import Field

from .._section import Section

__all__ = ["ServiceSettings"]


class ServiceSettings(Section):
    """The ``[service]`` section.

    Example::

        ServiceSettings(name="chat-gateway").name  # the `service` field of every log line
    """

    name: str = Field(
        default="gochat",
        min_length=1,
        description="The service name: the `service` field of every log line.",
    )
