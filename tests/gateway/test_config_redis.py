"""Config of the Redis topologies (spec §9.2): one or more servers, Sentinel, Cluster; and the
engine's shards built from it."""

from __future__ import annotations

from typing import Any

import pytest

from herald.gateway.app import redis_addresses
from herald.gateway.config import ConfigError, parse_config
from herald.gateway.engines.redis import ClusterAddress, SentinelAddress, ServerAddress
from tests.support.gateway import TEST_API_KEY as API_KEY

QUIET = {"token_hmac_secret_key": "0123456789abcdef0123456789abcdef", "api_key": API_KEY, "engine": "redis"}


def parsed(env: dict[str, str] | None = None, **keys: Any) -> Any:
    config, warnings = parse_config({**QUIET, **keys}, env or {})
    assert warnings == []
    return config


def problems(env: dict[str, str] | None = None, **keys: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({**QUIET, **keys}, env or {})
    return info.value.problems


def test_one_server_by_default_and_as_a_string_or_a_list() -> None:
    assert redis_addresses(parsed()) == [ServerAddress("redis://127.0.0.1:6379")]
    assert redis_addresses(parsed(redis_address="redis://r1:6379/2")) == [ServerAddress("redis://r1:6379/2")]
    assert redis_addresses(parsed(redis_address=["r1:6379", "rediss://:pw@r2:6380/0", "unix:///run/redis.sock"])) == [
        ServerAddress("redis://r1:6379"),
        ServerAddress("rediss://:pw@r2:6380/0"),
        ServerAddress("unix:///run/redis.sock"),
    ]


def test_sentinel_takes_the_place_of_redis_address() -> None:
    config = parsed(
        redis_address="redis://ignored:6379",
        redis_sentinel_address=["10.0.0.1:26379", "10.0.0.2:26379"],
        redis_sentinel_master_name="mymaster",
        redis_sentinel_password="sentinel-secret",
        redis_password="master-secret",
        redis_db=3,
    )
    assert redis_addresses(config) == [
        SentinelAddress(
            (("10.0.0.1", 26379), ("10.0.0.2", 26379)),
            "mymaster",
            sentinel_password="sentinel-secret",
            password="master-secret",
            db=3,
        )
    ]


def test_each_cluster_element_is_a_seed_list_and_a_shard() -> None:
    one = parsed(redis_cluster_address="10.0.0.1:7000, 10.0.0.2:7000", redis_user="herald", redis_password="pw")
    assert redis_addresses(one) == [
        ClusterAddress((("10.0.0.1", 7000), ("10.0.0.2", 7000)), user="herald", password="pw")
    ]
    two = parsed(redis_cluster_address=["a:7000,b:7000", "c:7000"])
    assert redis_addresses(two) == [ClusterAddress((("a", 7000), ("b", 7000))), ClusterAddress((("c", 7000),))]


def test_environment_variables() -> None:
    env = {
        "HERALD_REDIS_ADDRESS": "redis://r1:6379,redis://r2:6379",
        "HERALD_REDIS_SENTINEL_ADDRESS": "s1:26379,s2:26379",
        "HERALD_REDIS_SENTINEL_MASTER_NAME": "m",
    }
    config = parsed(env)
    assert config.redis_address == ("redis://r1:6379", "redis://r2:6379")
    assert config.redis_sentinel_address == ("s1:26379", "s2:26379")
    # A cluster's seeds are separated by commas: a plain variable is one cluster, JSON several.
    one = parsed({"HERALD_REDIS_CLUSTER_ADDRESS": "a:7000,b:7000"})
    assert one.redis_cluster_address == ("a:7000,b:7000",)
    two = parsed({"HERALD_REDIS_CLUSTER_ADDRESS": '["a:7000,b:7000", "c:7000"]'})
    assert two.redis_cluster_address == ("a:7000,b:7000", "c:7000")


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"redis_address": []}, ["redis_address: must list at least one Redis server"]),
        (
            {"redis_address": ["redis://ok:6379", "http://r:6379"]},
            ['redis_address: item 1 must be a redis://, rediss:// or unix:// URL or host:port, got "http://r:6379"'],
        ),
        ({"redis_address": "r1"}, ['redis_address: item 0 must be host:port, got "r1"']),
        (
            {"redis_address": "http://user:secret@r:6379"},
            [
                'redis_address: item 0 must be a redis://, rediss:// or unix:// URL or host:port, got "http://***@r:6379"'
            ],
        ),
        ({"redis_address": 6379}, ["redis_address: must be a list of strings, got 6379"]),
        (
            {"redis_sentinel_address": ["s1:26379"]},
            ["redis_sentinel_master_name: required with redis_sentinel_address"],
        ),
        (
            {"redis_sentinel_master_name": "m"},
            ["redis_sentinel_address: required with redis_sentinel_master_name"],
        ),
        (
            {"redis_sentinel_address": ["s1:port"], "redis_sentinel_master_name": "m"},
            ['redis_sentinel_address: item 0 must be host:port, got "s1:port"'],
        ),
        (
            {"redis_sentinel_address": ["s1:26379"], "redis_sentinel_master_name": "m", "redis_cluster_address": "c:1"},
            ["redis_cluster_address: cannot be combined with redis_sentinel_address; choose one topology"],
        ),
        (
            {"redis_cluster_address": ["a:7000,", " , "]},
            ['redis_cluster_address: item 1 must list at least one host:port seed node, got " , "'],
        ),
        ({"redis_cluster_address": ["a:70000"]}, ['redis_cluster_address: item 0 must be host:port, got "a:70000"']),
        (
            {"redis_cluster_address": "a:7000", "redis_prefix": "app{1}"},
            ["redis_prefix: must not contain { or } with redis_cluster_address (hash tags)"],
        ),
        (
            {"redis_cluster_address": "a:7000", "redis_db": 1},
            ["redis_db: must be 0 with redis_cluster_address (a cluster has one database)"],
        ),
    ],
)
def test_problems_name_the_key(keys: dict[str, Any], expected: list[str]) -> None:
    assert problems(**keys) == expected


def test_a_topology_set_for_the_memory_engine_is_a_warning() -> None:
    _, warnings = parse_config({**QUIET, "engine": "memory", "redis_cluster_address": "a:7000"}, {})
    assert warnings == ['redis_cluster_address: set but engine is "memory"; ignored']


def test_ipv6_hosts() -> None:
    config = parsed(
        redis_address="[::1]:6379", redis_sentinel_address="[fd00::1]:26379", redis_sentinel_master_name="m"
    )
    assert redis_addresses(config)[0] == SentinelAddress((("fd00::1", 26379),), "m")
    assert redis_addresses(parsed(redis_address="[::1]:6379")) == [ServerAddress("redis://[::1]:6379")]
