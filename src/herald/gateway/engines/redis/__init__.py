"""The Redis engine (several nodes): the only package that imports ``redis``."""

from herald.gateway.engines.redis.engine import RedisEngine

__all__ = ["RedisEngine"]
