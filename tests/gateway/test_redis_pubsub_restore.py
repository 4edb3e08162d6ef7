"""After the node's PUB/SUB comes back, its positioned subscribers are checked at once.

Publications made while a node's PUB/SUB connection was lost (or silently stalled) never reach
it. A later publication would reveal the gap, but there may be none for a long time: the node
therefore compares every positioned subscriber with its stream as soon as the connection is
back, and the SDK recovers (or is told ``recovered: false``) within seconds, long before the
periodic position check (``client_channel_position_check_delay``, 40 s by default).

Also here: the server API while Redis is down, and a retried publish with the same key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from centrifuge import Client

from tests.support.api import api, publish
from tests.support.gateway import GatewayProcess, base_config
from tests.support.proxy import Link, TcpProxy
from tests.support.pyclient import Recorder, close_client
from tests.support.redis_server import RedisServer, redis_server
from tests.support.timing import seconds
from tests.support.tokens import token

NAMESPACES = [{"name": "critical", "history_size": 50, "history_ttl": "120s", "force_recovery": True}]


def is_pubsub(link: Link) -> bool:
    return b"SUBSCRIBE" in link.sent


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    with redis_server() as server:
        yield server


async def started(config: dict[str, Any]) -> GatewayProcess:
    gw = GatewayProcess(config)
    await asyncio.to_thread(gw.start)  # off the loop: a test proxy on this loop may be in its way
    return gw


async def subscribed_client(gw: GatewayProcess, channel: str, recorder: Recorder) -> Client:
    client = Client(
        gw.ws_url,
        token=token(channels=[channel]),
        events=recorder.client_handler(),
        min_reconnect_delay=0.05,
        max_reconnect_delay=0.3,
    )
    sub = client.new_subscription(
        channel, events=recorder.sub_handler(channel), min_resubscribe_delay=0.05, max_resubscribe_delay=0.3
    )
    await client.connect()
    await sub.subscribe()
    await recorder.wait_for("sub:subscribed", channel)
    return client


def seqs(recorder: Recorder, channel: str) -> list[int]:
    return [e.ctx.pub.data["n"] for e in recorder.of("sub:publication", channel)]


async def test_publications_missed_during_a_stall_are_recovered_without_a_later_one(redis: RedisServer) -> None:
    channel = f"critical:{uuid.uuid4().hex[:8]}"
    async with TcpProxy(redis.port) as proxy:
        gw = await started(
            base_config(engine="redis", redis_address=f"redis://127.0.0.1:{proxy.port}/0", namespaces=NAMESPACES)
        )
        try:
            recorder = Recorder()
            client = await subscribed_client(gw, channel, recorder)
            await asyncio.to_thread(publish, gw.api_url, channel, {"n": 1})
            await recorder.wait_for("sub:publication", channel)
            assert proxy.stall(is_pubsub) == 1
            for n in (2, 3, 4):  # through the node's command connections, which still work
                await asyncio.to_thread(publish, gw.api_url, channel, {"n": n})
            # Nothing more is published: only the check after the rebuild can reveal the gap.
            recovered = await recorder.wait_for(
                "sub:subscribed", channel, where=lambda ctx: ctx.was_recovering, within=15
            )
            assert recovered.ctx.recovered
            await recorder.wait(lambda: len(recorder.of("sub:publication", channel)) >= 4, "4 publications")
            assert seqs(recorder, channel) == [1, 2, 3, 4]
            await close_client(client)
        finally:
            await asyncio.to_thread(gw.close)


async def test_a_restart_that_replaced_the_stream_is_reported_without_a_later_publication(redis: RedisServer) -> None:
    channel = f"critical:{uuid.uuid4().hex[:8]}"
    gw = await started(base_config(engine="redis", redis_address=redis.url, namespaces=NAMESPACES))
    try:
        recorder = Recorder()
        client = await subscribed_client(gw, channel, recorder)
        await asyncio.to_thread(publish, gw.api_url, channel, {"n": 1})
        await recorder.wait_for("sub:publication", channel)
        await asyncio.to_thread(redis.stop)
        await asyncio.to_thread(redis.start)  # empty: the channel's stream and epoch are gone
        told = await recorder.wait_for("sub:subscribed", channel, where=lambda ctx: ctx.was_recovering, within=15)
        assert not told.ctx.recovered
        await close_client(client)
    finally:
        await asyncio.to_thread(gw.close)


async def test_a_publish_refused_during_an_outage_is_delivered_once_when_retried(redis: RedisServer) -> None:
    """Error 100 (transient for the Django task) while Redis is down; the retry, with the same
    idempotency key, is stored and delivered once, and a further retry returns the same result."""
    channel = f"critical:{uuid.uuid4().hex[:8]}"
    gw = await started(base_config(engine="redis", redis_address=redis.url, namespaces=NAMESPACES))
    try:
        recorder = Recorder()
        client = await subscribed_client(gw, channel, recorder)
        params = {"channel": channel, "data": {"n": 1}, "idempotency_key": "event-1"}
        await asyncio.to_thread(redis.stop)
        refused = await asyncio.to_thread(api, gw.api_url, "publish", params)
        assert refused == {"error": {"code": 100, "message": "internal server error"}}
        await asyncio.to_thread(redis.start)
        # Redis came back empty: the subscriber is told (recovered: false) before the retry.
        await recorder.wait_for("sub:subscribed", channel, where=lambda ctx: ctx.was_recovering, within=15)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds(15)
        while "result" not in (first := await asyncio.to_thread(api, gw.api_url, "publish", params)):
            assert first["error"]["code"] == 100, first
            assert loop.time() < deadline, "publishing never worked again"
            await asyncio.sleep(0.1)
        again = await asyncio.to_thread(api, gw.api_url, "publish", params)
        assert again == first
        await recorder.wait_for("sub:publication", channel, within=15)
        await asyncio.to_thread(publish, gw.api_url, channel, {"n": 2})
        await recorder.wait_for("sub:publication", channel, where=lambda ctx: ctx.pub.data["n"] == 2)
        assert seqs(recorder, channel).count(1) == 1
        await close_client(client)
    finally:
        await asyncio.to_thread(gw.close)
