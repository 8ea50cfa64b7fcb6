"""Snowflake IDs with leased machine IDs; ``[idgen]`` settings."""

from ._settings import IdGenSettings

__all__ = ["IdGenSettings"]
