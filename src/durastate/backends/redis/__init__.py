"""redis://, rediss:// and unix:// — a sans-I/O core with a sync and an async driver."""

from durastate.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
