"""The broker contract (``broker_contract.py``, unchanged) on every Redis topology but one server:
two servers sharing the channels out, a Sentinel-managed master, and a three-master Cluster.
Each topology is started once for the module, as real ``redis-server`` processes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from herald.gateway.engines.redis import ClusterAddress, RedisEngine, SentinelAddress
from tests.gateway.broker_contract import BrokerContract, Engine, started
from tests.support.redis_server import (
    SENTINEL_MASTER,
    RedisClusterGroup,
    RedisServer,
    SentinelGroup,
    redis_cluster,
    redis_server,
    sentinel_group,
)


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def sentinel_address(group: SentinelGroup) -> SentinelAddress:
    return SentinelAddress(tuple(host_port(a) for a in group.addresses), SENTINEL_MASTER)


def cluster_address(group: RedisClusterGroup) -> ClusterAddress:
    return ClusterAddress(tuple(host_port(a) for a in group.seeds.split(",")))


@pytest.fixture(scope="module")
def server_pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    with redis_server() as first, redis_server() as second:
        yield first, second


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelGroup]:
    with sentinel_group() as group:
        yield group


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterGroup]:
    with redis_cluster() as group:
        yield group


async def started_engine(redis_engine: RedisEngine) -> Engine:
    return await started(redis_engine.broker, redis_engine.presence)


def prefix() -> str:
    return f"herald-test-{uuid.uuid4().hex[:8]}"


class TestShardedPair(BrokerContract):
    """Every rule of the contract with channels spread over two independent servers."""

    @pytest.fixture
    async def engine(self, server_pair: tuple[RedisServer, RedisServer]) -> AsyncIterator[Engine]:
        eng = await started_engine(RedisEngine([s.url for s in server_pair], prefix=prefix()))
        yield eng
        await eng.close()


class TestSentinel(BrokerContract):
    """Every rule of the contract on the master three sentinels name."""

    @pytest.fixture
    async def engine(self, sentinels: SentinelGroup) -> AsyncIterator[Engine]:
        eng = await started_engine(RedisEngine(sentinel_address(sentinels), prefix=prefix()))
        yield eng
        await eng.close()


class TestCluster(BrokerContract):
    """Every rule of the contract on a three-master Redis Cluster (hash tags, sharded PUB/SUB)."""

    @pytest.fixture
    async def engine(self, cluster: RedisClusterGroup) -> AsyncIterator[Engine]:
        eng = await started_engine(RedisEngine(cluster_address(cluster), prefix=prefix()))
        yield eng
        await eng.close()
