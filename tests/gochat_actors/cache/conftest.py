"""Fixtures of the cache tests."""

from tests.gochat_actors.cache._private_redis import private_redis as private_redis
