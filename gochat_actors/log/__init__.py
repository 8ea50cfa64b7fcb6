"""Structured logs (structlog); ``[log]`` settings."""

from ._settings import LogSettings

__all__ = ["LogSettings"]
