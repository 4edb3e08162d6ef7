"""The Redis engine through outages and subscription churn: nothing half-registered, nothing cut off.

Each test runs its own ``redis-server`` so it can stop and start it; the clients are the official
centrifuge-python SDK (and raw frames where the SDK cannot stage the case).
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from centrifuge import Client

from tests.support.api import api, publish
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.pyclient import Recorder, close_client
from tests.support.raw import RawClient
from tests.support.redis_server import RedisServer, redis_server
from tests.support.timing import seconds, wait_until
from tests.support.tokens import token

NAMESPACES = [
    {"name": "critical", "history_size": 50, "history_ttl": "120s", "force_recovery": True},
    {"name": "chat", "allow_subscribe_for_client": True},
]


def engine_config(server: RedisServer, **extra: Any) -> dict[str, Any]:
    return base_config(engine="redis", redis_address=server.url, namespaces=NAMESPACES, **extra)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def sdk_client(gw: GatewayProcess, recorder: Recorder, channel: str) -> Client:
    return Client(
        gw.ws_url,
        token=token(channels=[channel]),
        events=recorder.client_handler(),
        min_reconnect_delay=0.05,
        max_reconnect_delay=0.3,
    )


def subscribe_with_fast_retries(client: Client, recorder: Recorder, channel: str) -> Any:
    return client.new_subscription(
        channel, events=recorder.sub_handler(channel), min_resubscribe_delay=0.05, max_resubscribe_delay=0.3
    )


def outage_errors(recorder: Recorder, channel: str) -> list[int]:
    return [event.ctx.error.code for event in recorder.of("sub:error", channel)]


# --- subscription churn: the engine must never stop delivering to a live subscriber


async def test_subscribers_churning_on_one_channel_never_lose_it(redis: RedisServer) -> None:
    """Two clients take turns on one channel while it is published to: in every round the last
    subscriber leaves (server unsubscribe, whose engine clean-up runs later) and the other arrives
    in the same batch, before that clean-up. The node must not then drop the channel from
    PUB/SUB under the newcomer (it used to decide the unsubscribe when the last one left)."""
    channel = f"chat:{uuid.uuid4().hex[:8]}"
    with running_gateway(engine_config(redis)) as gw:
        clients = {}
        for user in ("a", "b"):
            clients[user] = await RawClient.open(gw.ws_url)
            await clients[user].connect(token(user=user))
        assert "subscribe" in await clients["a"].subscribe(channel)
        leaving, arriving = "a", "b"
        for round_no in range(10):
            commands = [
                {"unsubscribe": {"user": leaving, "channel": channel}},
                {"subscribe": {"user": arriving, "channel": channel}},
            ]
            reply = api(gw.api_url, "batch", {"commands": commands})
            assert reply == {"replies": [{"unsubscribe": {}}, {"subscribe": {}}]}
            assert (await clients[leaving].push(lambda p: "unsubscribe" in p))["channel"] == channel
            assert (await clients[arriving].push(lambda p: "subscribe" in p))["channel"] == channel
            publish(gw.api_url, channel, {"round": round_no})
            push = await clients[arriving].push(lambda p: "pub" in p)
            assert push == {"channel": channel, "pub": {"data": {"round": round_no}}}, round_no
            leaving, arriving = arriving, leaving
        for client in clients.values():
            await client.close()


# --- a Redis outage: a subscribe that fails leaves no trace, and the SDK gets there in the end


async def test_a_subscribe_during_an_outage_succeeds_once_redis_is_back(redis: RedisServer) -> None:
    channel = f"tenant_{uuid.uuid4().hex[:6]}"
    with running_gateway(engine_config(redis)) as gw:
        recorder = Recorder()
        client = sdk_client(gw, recorder, channel)
        await client.connect()
        await recorder.wait_for("connected")
        redis.stop()
        sub = subscribe_with_fast_retries(client, recorder, channel)
        await sub.subscribe()
        # The node's first subscriber of the channel, while PUB/SUB is down: a temporary error.
        await recorder.wait_for("sub:error", channel, within=10)
        assert set(outage_errors(recorder, channel)) == {100}
        redis.start()
        await recorder.wait_for("sub:subscribed", channel, within=15)
        assert not recorder.of("sub:unsubscribed", channel), "the SDK gave the subscription up"
        assert 105 not in outage_errors(recorder, channel)
        publish(gw.api_url, channel, {"after": "outage"})
        event = await recorder.wait_for("sub:publication", channel)
        assert event.ctx.pub.data == {"after": "outage"}
        await close_client(client)


async def test_a_subscribe_during_an_outage_on_a_restarted_node_succeeds_once_redis_is_back(
    redis: RedisServer,
) -> None:
    """The same through a zero-downtime restart on reuse_port: the new node starts while Redis is
    down, takes the clients over, and serves them once Redis answers again."""
    channel = f"tenant_{uuid.uuid4().hex[:6]}"
    cfg = engine_config(redis, reuse_port=True)
    with running_gateway(cfg) as old:
        recorder = Recorder()
        client = sdk_client(old, recorder, channel)
        sub = subscribe_with_fast_retries(client, recorder, channel)
        await client.connect()
        await sub.subscribe()
        await recorder.wait_for("sub:subscribed", channel)
        redis.stop()
        new = GatewayProcess(cfg, port=old.port)
        try:
            new.start()  # healthy although Redis is down
            before = recorder.mark()
            old.stop()  # drains: 3001, the SDK reconnects to the new node and resubscribes
            await recorder.wait_for("sub:error", channel, within=10)
            assert set(outage_errors(recorder, channel)) == {100}
            redis.start()
            await recorder.wait_for("sub:subscribed", channel, within=15, since=before)
            assert not recorder.of("sub:unsubscribed", channel)
            publish(new.api_url, channel, {"after": "restart"})
            event = await recorder.wait_for("sub:publication", channel, where=lambda c: c.pub.data.get("after"))
            assert event.ctx.pub.data == {"after": "restart"}
            await close_client(client)
        finally:
            new.close()


async def test_a_publish_right_after_a_redis_restart_succeeds_at_once(redis: RedisServer) -> None:
    """Pooled connections to the old Redis process are stale after a restart: none may surface
    as an error to the API caller."""
    with running_gateway(engine_config(redis)) as gw:
        channels = [f"critical:{uuid.uuid4().hex[:8]}" for _ in range(8)]

        async def publish_all(tag: str) -> list[dict[str, Any]]:
            calls = [
                asyncio.to_thread(api, gw.api_url, "publish", {"channel": c, "data": {"tag": tag}}) for c in channels
            ]
            return list(await asyncio.gather(*calls))

        assert all("result" in reply for reply in await publish_all("warm-up"))  # several pooled connections
        redis.stop()
        redis.start()
        replies = await publish_all("after-restart")
        assert [reply.get("error") for reply in replies] == [None] * len(channels)
        # A fresh Redis: every stream starts again at offset 1.
        assert {reply["result"]["offset"] for reply in replies} == {1}


def status_of(gw: GatewayProcess, path: str) -> int:
    try:
        with urllib.request.urlopen(f"{gw.http_url}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_ready_answers_503_while_redis_is_down(redis: RedisServer) -> None:
    with running_gateway(engine_config(redis)) as gw:
        assert status_of(gw, "/ready") == 200
        redis.stop()
        await wait_until(lambda: status_of(gw, "/ready") == 503, "/ready to answer 503", within=10)
        assert status_of(gw, "/health") == 200  # alive: no reason to restart it
        redis.start()
        await wait_until(lambda: status_of(gw, "/ready") == 200, "/ready to answer 200 again", within=15)


async def test_subscribes_during_an_outage_leave_no_trace_on_the_node(redis: RedisServer) -> None:
    """Raw view of the same: after the failed subscribe the channel is not "already subscribed",
    and the node holds no subscriber for it (the API's channel survey counts none)."""
    channel = f"tenant_{uuid.uuid4().hex[:6]}"
    with running_gateway(engine_config(redis)) as gw:
        client = await RawClient.open(gw.ws_url)
        await client.connect(token(channels=[channel]))
        redis.stop()
        failed = await client.subscribe(channel)
        assert failed["error"] == {"code": 100, "message": "internal server error", "temporary": True}
        survey = api(gw.api_url, "channels", {})
        assert survey == {"result": {"channels": {}}}
        redis.start()

        async def subscribed() -> dict[str, Any]:
            while True:
                reply = await client.subscribe(channel)
                if "error" not in reply or reply["error"]["code"] != 100:
                    return reply
                await asyncio.sleep(0.05)

        reply = await asyncio.wait_for(subscribed(), seconds(15))
        assert "subscribe" in reply, reply
        await client.close()
        assert "Traceback" not in gw.log()
