"""Primary + read replicas over SQLAlchemy async; ``[db]`` settings."""

from ._settings import DBSettings

__all__ = ["DBSettings"]
