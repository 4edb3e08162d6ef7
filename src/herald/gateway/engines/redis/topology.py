"""Where the engine's data lives: one shard per Redis server, Sentinel group or Cluster.

A :class:`Shard` is what the engine needs from one place of storage: a command client (pooled,
retrying connection errors a few times with backoff) and a PUB/SUB subscriber that reconnects,
resubscribes and probes itself (``pubsub.py``, ``cluster.py``). Channels are spread over the
shards by ``hashing.shard_index``; a single server is one shard.

* :class:`ServerAddress`: one Redis server (a ``redis://``, ``rediss://`` or ``unix://`` URL).
* :class:`SentinelAddress`: the master Sentinel names; every new connection asks the sentinels
  where the master is, so after a failover the reconnecting node lands on the promoted replica.
* :class:`ClusterAddress`: a Redis Cluster (7.0 or newer: sharded PUB/SUB) found through seed nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from herald.gateway.engines.redis.cluster import ClusterSubscriber
from herald.gateway.engines.redis.keys import KeyNames
from herald.gateway.engines.redis.pubsub import Probe, PubSubLink

# Connection errors are retried this many times, 50 ms to 500 ms apart (with jitter), before
# the operation fails; a pooled connection idle longer than HEALTH_CHECK_INTERVAL is PINGed first.
COMMAND_RETRIES: Final = 3
HEALTH_CHECK_INTERVAL: Final = 2
CONNECT_TIMEOUT: Final = 5.0
# A command that gets no answer for this long fails (and is retried on another connection): a
# connection that silently stopped answering must not hold a command forever.
COMMAND_TIMEOUT: Final = 10.0
SENTINEL_TIMEOUT: Final = 2.0  # a sentinel that does not answer in this time is passed over
POOL_WAIT: Final = 30.0  # how long a command waits for a free pooled connection


@dataclass(frozen=True, slots=True)
class ServerAddress:
    url: str


@dataclass(frozen=True, slots=True)
class SentinelAddress:
    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    sentinel_user: str = ""
    sentinel_password: str = ""
    user: str = ""  # for the master (and replicas) the sentinels name
    password: str = ""
    db: int = 0


@dataclass(frozen=True, slots=True)
class ClusterAddress:
    seeds: tuple[tuple[str, int], ...]
    user: str = ""
    password: str = ""


Address = ServerAddress | SentinelAddress | ClusterAddress


class Subscriber(Protocol):
    """A shard's PUB/SUB side (:class:`PubSubLink`, or :class:`ClusterSubscriber`)."""

    @property
    def online(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def subscribe(self, name: str) -> None: ...

    async def unsubscribe(self, name: str) -> None: ...


@dataclass(eq=False)
class Shard:
    name: str
    redis: Any  # redis.asyncio.Redis, or RedisCluster
    subscriber: Subscriber
    # Sharded PUB/SUB on a cluster: publications go out with SPUBLISH.
    sharded: bool = False
    # Bounds the commands in flight on a cluster, whose per-node pools refuse rather than queue.
    guard: contextlib.AbstractAsyncContextManager[Any] = field(default_factory=contextlib.nullcontext)
    closers: tuple[Callable[[], Any], ...] = ()

    @property
    def online(self) -> bool:
        return self.subscriber.online

    async def start(self) -> None:
        await self.subscriber.start()

    async def close(self) -> None:
        await self.subscriber.close()
        await self.redis.aclose()
        for close in self.closers:
            await close()


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The master's address from the sentinels, and commands that queue for a free connection
    rather than fail when all are busy (a reconnect storm issues thousands at once)."""


def _command_retry() -> dict[str, Any]:
    return {
        "retry": Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), COMMAND_RETRIES),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, OSError],
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": COMMAND_TIMEOUT,
        "socket_keepalive": True,
    }


def _pubsub_options() -> dict[str, Any]:
    """PUB/SUB connections have no retry policy of their own (see pubsub.py)."""
    return {"retry": Retry(NoBackoff(), 0), "socket_connect_timeout": CONNECT_TIMEOUT, "socket_keepalive": True}


def open_shard(
    address: Address,
    keys: KeyNames,
    *,
    pool_size: int,
    on_message: Callable[[str, bytes], None],
    on_restored: Callable[[list[str]], None],
) -> Shard:
    if isinstance(address, ServerAddress):
        return _server_shard(address, keys, pool_size, on_message, on_restored)
    if isinstance(address, SentinelAddress):
        return _sentinel_shard(address, keys, pool_size, on_message, on_restored)
    return _cluster_shard(address, keys, pool_size, on_message, on_restored)


def _probe(client: Any, keys: KeyNames) -> Probe:
    channel = keys.probe(uuid.uuid4().hex[:12])

    async def send(name: str, token: bytes) -> None:
        await client.publish(name, token)

    return Probe(channel=lambda: channel, send=send)


def _server_shard(
    address: ServerAddress,
    keys: KeyNames,
    pool_size: int,
    on_message: Callable[[str, bytes], None],
    on_restored: Callable[[list[str]], None],
) -> Shard:
    # A bounded pool that queues commands when every connection is busy: a reconnect storm
    # issues thousands of commands at once, and a connection each would cost CPU and hit the
    # server's client limit.
    pool = BlockingConnectionPool.from_url(
        address.url,
        max_connections=pool_size,
        timeout=POOL_WAIT,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        **_command_retry(),
    )
    client = aioredis.Redis.from_pool(pool)  # owns the pool: closed with it
    link = PubSubLink(
        lambda: aioredis.Redis.from_url(address.url, **_pubsub_options()),
        on_message,
        control=keys.control,
        probe=_probe(client, keys),
        on_restored=on_restored,
        name=_display(address.url),
    )
    return Shard(_display(address.url), client, link)


def _sentinel_shard(
    address: SentinelAddress,
    keys: KeyNames,
    pool_size: int,
    on_message: Callable[[str, bytes], None],
    on_restored: Callable[[list[str]], None],
) -> Shard:
    sentinel_options: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}
    if address.sentinel_user:
        sentinel_options["username"] = address.sentinel_user
    if address.sentinel_password:
        sentinel_options["password"] = address.sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(address.sentinels),
        sentinel_kwargs=sentinel_options,
        username=address.user or None,
        password=address.password or None,
        db=address.db,
    )
    client = sentinel.master_for(
        address.master_name,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=pool_size,
        timeout=POOL_WAIT,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        **_command_retry(),
    )
    name = f"sentinel master {address.master_name}"
    link = PubSubLink(
        lambda: sentinel.master_for(address.master_name, **_pubsub_options()),
        on_message,
        control=keys.control,
        probe=_probe(client, keys),
        on_restored=on_restored,
        name=name,
    )
    return Shard(name, client, link, closers=(sentinel.aclose,))


def _cluster_shard(
    address: ClusterAddress,
    keys: KeyNames,
    pool_size: int,
    on_message: Callable[[str, bytes], None],
    on_restored: Callable[[list[str]], None],
) -> Shard:
    credentials: dict[str, Any] = {"username": address.user or None, "password": address.password or None}
    options = _command_retry()
    del options["retry_on_error"]  # the cluster client retries (and re-reads the topology) itself
    cluster = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in address.seeds],
        max_connections=pool_size,
        require_full_coverage=False,  # slots with a live master keep working when others have none
        **credentials,
        **options,
    )

    def node_client(host: str, port: int) -> aioredis.Redis:
        return aioredis.Redis(host=host, port=port, **credentials, **_pubsub_options())

    name = "cluster " + ",".join(f"{host}:{port}" for host, port in address.seeds)
    subscriber = ClusterSubscriber(cluster, node_client, keys, on_message, on_restored, name)
    return Shard(name, cluster, subscriber, sharded=True, guard=asyncio.Semaphore(pool_size))


def _display(url: str) -> str:
    """A URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"
