"""The Redis engine (several nodes): the only package that imports ``redis``."""

from herald.gateway.engines.redis.engine import RedisEngine, ResubscribeListener
from herald.gateway.engines.redis.topology import Address, ClusterAddress, SentinelAddress, ServerAddress

__all__ = ["Address", "ClusterAddress", "RedisEngine", "ResubscribeListener", "SentinelAddress", "ServerAddress"]
