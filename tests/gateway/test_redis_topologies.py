"""What each Redis topology adds to the broker contract, on the engine itself with real processes:
where a channel's keys live when sharded, control messages across shards, readiness, sharded
PUB/SUB and slot moves on a cluster, and the probe that finds a stalled PUB/SUB connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection, Iterator

import pytest
import redis

from herald.gateway.codecs.messages import ClientInfo, Publication
from herald.gateway.engines.broker import PublishOptions
from herald.gateway.engines.redis import ClusterAddress, RedisEngine
from herald.gateway.engines.redis.hashing import shard_index
from herald.gateway.engines.redis.keys import KeyNames
from tests.gateway.broker_contract import Engine, RecordingHandler, channel, data, info, publish
from tests.support.proxy import TcpProxy
from tests.support.redis_server import RedisClusterGroup, RedisServer, redis_cluster, redis_server
from tests.support.timing import seconds

HISTORY_AND_KEY = PublishOptions(history_size=10, history_ttl=60.0, history_meta_ttl=3600.0, idempotency_key="k1")


class Recorder(RecordingHandler):
    """Also records the channels whose PUB/SUB the engine re-established (the node checks them)."""

    def __init__(self) -> None:
        super().__init__()
        self.resubscribed: list[str] = []

    def handle_resubscribed(self, channels: Collection[str]) -> None:
        self.resubscribed.extend(channels)


async def started(redis_engine: RedisEngine) -> Engine:
    events = Recorder()
    await redis_engine.broker.start(events)
    return Engine(redis_engine.broker, redis_engine.presence, events)


def recorder(engine: Engine) -> Recorder:
    assert isinstance(engine.events, Recorder)
    return engine.events


async def eventually(predicate: object, what: str, timeout: float = 10.0) -> None:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds(timeout)
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


def prefix() -> str:
    return f"herald-test-{uuid.uuid4().hex[:8]}"


def keys_on(server: RedisServer, pattern: str) -> set[str]:
    client = redis.Redis(port=server.port)
    try:
        return {key.decode() for key in client.scan_iter(match=pattern, count=1000)}
    finally:
        client.close()


# --- several servers


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    with redis_server() as first, redis_server() as second:
        yield first, second


@pytest.fixture
async def sharded(pair: tuple[RedisServer, RedisServer]) -> AsyncIterator[tuple[Engine, Engine, str]]:
    """Two nodes on the same two servers and prefix."""
    p = prefix()
    a = await started(RedisEngine([s.url for s in pair], prefix=p))
    b = await started(RedisEngine([s.url for s in pair], prefix=p))
    yield a, b, p
    await a.close()
    await b.close()
    for server in pair:
        if not server.running:
            server.start()


async def test_a_channel_keeps_every_key_on_its_shard_and_channels_use_both(
    sharded: tuple[Engine, Engine, str], pair: tuple[RedisServer, RedisServer]
) -> None:
    a, _, p = sharded
    channels = [channel() for _ in range(40)]
    for ch in channels:
        await a.broker.publish(ch, publish_payload(), HISTORY_AND_KEY)
        await a.presence.add_presence(ch, "c1", info("1", "c1"), 60.0)
    keys = KeyNames(p)
    found = [keys_on(server, f"{p}.*") for server in pair]
    for ch in channels:
        home = shard_index(ch, 2)
        expected = {keys.stream(ch), keys.meta(ch), keys.result(ch, "k1"), *keys.presence(ch)}
        assert expected <= found[home], ch
        assert not expected & found[1 - home], ch
    homes = {shard_index(ch, 2) for ch in channels}
    assert homes == {0, 1}, "40 channels all hashed to one server"


async def test_publications_reach_other_nodes_on_both_shards(sharded: tuple[Engine, Engine, str]) -> None:
    a, b, _ = sharded
    channels = [channel() for _ in range(8)]
    assert {shard_index(ch, 2) for ch in channels} == {0, 1}
    for ch in channels:
        await b.broker.subscribe(ch)
    for ch in channels:
        await publish(a, ch, 1)
    for ch in channels:
        ((pub, _),) = await b.events.wait_publications(ch, 1)
        assert pub.offset == 1


async def test_control_messages_reach_every_node_while_a_shard_is_down(
    sharded: tuple[Engine, Engine, str], pair: tuple[RedisServer, RedisServer]
) -> None:
    a, b, _ = sharded
    assert a.broker.online and b.broker.online
    for n in range(4):  # taking turns, on both shards
        await a.broker.publish_control(b"up-%d" % n)
    await eventually(lambda: len(b.events.controls) >= 4, "node b got four control messages")
    pair[1].stop()
    await eventually(lambda: not a.broker.online and not b.broker.online, "both nodes see a shard down")
    for n in range(4):
        await a.broker.publish_control(b"one-shard-%d" % n)  # all on the shard that is up
    await eventually(
        lambda: sum(data.startswith(b"one-shard") for data in b.events.controls) == 4,
        "node b got every control message sent while a shard was down",
    )
    pair[1].start()
    await eventually(lambda: a.broker.online and b.broker.online, "both nodes see both shards up again")


# --- the probe: a PUB/SUB connection that stops delivering without breaking


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[Engine, Engine, TcpProxy]]:
    """Node a reaches Redis through a proxy the test can stall; node b directly."""
    with redis_server() as server:
        async with TcpProxy(server.port) as proxy:
            p = prefix()
            a = await started(RedisEngine(f"redis://127.0.0.1:{proxy.port}/0", prefix=p))
            b = await started(RedisEngine(server.url, prefix=p))
            yield a, b, proxy
            await a.close()
            await b.close()


def is_pubsub(link: object) -> bool:
    return b"SUBSCRIBE" in getattr(link, "sent", b"")


async def test_a_stalled_pubsub_connection_is_rebuilt_and_its_channels_reported(
    proxied: tuple[Engine, Engine, TcpProxy],
) -> None:
    a, b, proxy = proxied
    ch = channel()
    await a.broker.subscribe(ch)
    await publish(b, ch, 1)
    await a.events.wait_publications(ch, 1)
    assert proxy.stall(is_pubsub) == 1
    loop = asyncio.get_running_loop()
    stalled_at = loop.time()
    await publish(b, ch, 2)  # lost on the stalled connection
    await eventually(lambda: ch in recorder(a).resubscribed, "node a rebuilt its PUB/SUB and reported the channel")
    rebuilt_after = loop.time() - stalled_at
    print(f"stalled PUB/SUB rebuilt and its channel reported after {rebuilt_after:.1f}s")
    assert a.broker.online
    await publish(b, ch, 3)
    delivered = await a.events.wait_publications(ch, 2)
    assert [pub.offset for pub, _ in delivered] == [1, 3]  # 2 is the gap the node now checks for


# --- Redis Cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterGroup]:
    with redis_cluster() as group:
        yield group


def cluster_engine(group: RedisClusterGroup, p: str) -> RedisEngine:
    seeds = tuple((host, int(port)) for host, _, port in (s.rpartition(":") for s in group.seeds.split(",")))
    return RedisEngine(ClusterAddress(seeds), prefix=p)


async def test_cluster_publications_travel_by_sharded_pubsub_on_the_channels_node(cluster: RedisClusterGroup) -> None:
    p = prefix()
    a = await started(cluster_engine(cluster, p))
    b = await started(cluster_engine(cluster, p))
    try:
        ch = channel()
        await b.broker.subscribe(ch)
        pubsub_name = KeyNames(p, tagged=True).client(ch)
        owner = cluster.owner_of(pubsub_name)
        assert owner.command("PUBSUB", "SHARDNUMSUB", pubsub_name) == [pubsub_name.encode(), 1]
        assert owner.command("PUBSUB", "NUMSUB", pubsub_name) == [pubsub_name.encode(), 0]
        assert cluster.owner_of(KeyNames(p, tagged=True).stream(ch)) is owner
        await publish(a, ch, 1)
        await a.broker.publish_join(ch, ClientInfo(user="1", client="c1"))
        ((pub, _),) = await b.events.wait_publications(ch, 1)
        assert pub.offset == 1
        assert (await b.events.wait_join(ch)).client == "c1"
    finally:
        await a.close()
        await b.close()


async def test_cluster_channels_follow_their_slot_to_another_master(cluster: RedisClusterGroup) -> None:
    """Resharding: the slot of a subscribed channel moves to another live master. Redis ends the
    sharded subscription itself; the node subscribes it at the new owner and reports it restored."""
    p = prefix()
    a = await started(cluster_engine(cluster, p))
    b = await started(cluster_engine(cluster, p))
    try:
        ch = channel()
        await b.broker.subscribe(ch)
        await publish(a, ch, 1)
        await b.events.wait_publications(ch, 1)
        pubsub_name = KeyNames(p, tagged=True).client(ch)
        source = cluster.owner_of(pubsub_name)
        target = next(m for m in cluster.masters() if m is not source)
        cluster.move_slot(int(str(source.command("CLUSTER", "KEYSLOT", pubsub_name))), source, target)
        await eventually(lambda: ch in recorder(b).resubscribed, "node b subscribed the channel at its new master")
        assert target.command("PUBSUB", "SHARDNUMSUB", pubsub_name) == [pubsub_name.encode(), 1]
        await eventually(lambda: b.broker.online, "node b is ready again")
        await publish(a, ch, 2)
        delivered = await b.events.wait_publications(ch, 2)
        assert [pub.offset for pub, _ in delivered] == [1, 2]
    finally:
        await a.close()
        await b.close()


def publish_payload() -> Publication:
    return Publication(data=data(1))
