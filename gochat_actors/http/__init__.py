"""HTTP endpoints (/metrics, /healthz, /readyz, /debug/tree); ``[http]`` settings."""

from ._settings import HTTPSettings

__all__ = ["HTTPSettings"]
