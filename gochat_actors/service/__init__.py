"""The standard service tree (``open_service``) and its ``[service]`` settings."""

from ._settings import ServiceSettings

__all__ = ["ServiceSettings"]
