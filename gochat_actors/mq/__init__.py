"""Kafka producer and consumer groups; ``[mq]`` settings."""

from ._settings import MQSettings

__all__ = ["MQSettings"]
