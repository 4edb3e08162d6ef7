"""Idempotent publish (decisions §6): a repeated ``idempotency_key`` returns the first result and is
neither stored nor delivered again; another key is another publication.

Each test ends with a publication without a key as a fence: once the subscriber has the fence,
everything published before it has been delivered, so counting is exact.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cent import BroadcastRequest, PublishRequest
from cent import Client as CentClient

from tests.support.api import api, publish
from tests.support.gateway import TEST_API_KEY, GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.tokens import token


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    with running_gateway(base_config()) as gateway:
        yield gateway


def fresh() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return f"critical:{suffix}", suffix


async def subscriber(gw: GatewayProcess, *channels: str) -> RawClient:
    c = await RawClient.open(gw.ws_url)
    await c.connect(token(channels=list(channels)))
    for channel in channels:
        assert "subscribe" in await c.subscribe(channel)
    return c


async def delivered_until_fence(gw: GatewayProcess, c: RawClient, channel: str) -> list[Any]:
    """Publish a fence and return the data delivered on ``channel`` before it."""
    fence = {"fence": uuid.uuid4().hex}
    await asyncio.to_thread(publish, gw.api_url, channel, fence)
    seen: list[Any] = []
    while True:
        push = await c.push(lambda p: p.get("channel") == channel and "pub" in p)
        if push["pub"]["data"] == fence:
            return seen
        seen.append(push["pub"]["data"])


def history_data(gw: GatewayProcess, channel: str) -> list[Any]:
    result = api(gw.api_url, "history", {"channel": channel, "limit": -1})["result"]
    return [p["data"] for p in result["publications"]]


async def test_the_same_key_twice_stores_and_delivers_once(gw: GatewayProcess) -> None:
    ch, _ = fresh()
    c = await subscriber(gw, ch)
    first = publish(gw.api_url, ch, {"n": 1}, idempotency_key="order-1")
    again = publish(gw.api_url, ch, {"n": 2}, idempotency_key="order-1")  # a retry (even with other data)
    assert first == again and first["offset"] >= 1 and first["epoch"]
    assert await delivered_until_fence(gw, c, ch) == [{"n": 1}]
    assert history_data(gw, ch)[:1] == [{"n": 1}] and len(history_data(gw, ch)) == 2  # + the fence
    await c.close()


async def test_concurrent_publishes_with_one_key_store_and_deliver_once(gw: GatewayProcess) -> None:
    ch, _ = fresh()
    c = await subscriber(gw, ch)

    def one(n: int) -> dict[str, Any]:
        return publish(gw.api_url, ch, {"n": n}, idempotency_key="retry-storm")

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = await asyncio.gather(*(asyncio.wrap_future(pool.submit(one, n)) for n in range(10)))
    assert len({(r["offset"], r["epoch"]) for r in results}) == 1
    delivered = await delivered_until_fence(gw, c, ch)
    assert len(delivered) == 1 and delivered[0]["n"] in range(10)
    assert history_data(gw, ch)[:-1] == delivered
    await c.close()


async def test_different_keys_are_different_publications(gw: GatewayProcess) -> None:
    ch, _ = fresh()
    c = await subscriber(gw, ch)
    a = publish(gw.api_url, ch, {"n": 1}, idempotency_key="a")
    b = publish(gw.api_url, ch, {"n": 2}, idempotency_key="b")
    assert b["offset"] == a["offset"] + 1
    assert await delivered_until_fence(gw, c, ch) == [{"n": 1}, {"n": 2}]
    await c.close()


async def test_keys_are_per_channel(gw: GatewayProcess) -> None:
    one, _ = fresh()
    two, _ = fresh()
    first = publish(gw.api_url, one, {"n": 1}, idempotency_key="shared")
    second = publish(gw.api_url, two, {"n": 1}, idempotency_key="shared")
    assert first["offset"] == second["offset"] == 1 and first["epoch"] != "" and second["epoch"] != ""
    assert history_data(gw, one) == history_data(gw, two) == [{"n": 1}]


async def test_broadcast_with_a_key_is_idempotent_per_channel(gw: GatewayProcess) -> None:
    one, _ = fresh()
    two, _ = fresh()
    c = await subscriber(gw, one, two)
    body = {"channels": [one, two], "data": {"n": 1}, "idempotency_key": "bcast"}
    first = api(gw.api_url, "broadcast", body)["result"]["responses"]
    again = api(gw.api_url, "broadcast", {**body, "data": {"n": 2}})["result"]["responses"]
    assert first == again and [r["result"]["offset"] for r in first] == [1, 1]
    assert await delivered_until_fence(gw, c, one) == [{"n": 1}]
    assert await delivered_until_fence(gw, c, two) == [{"n": 1}]
    # The broadcast's key also covers a later single publish to one of its channels.
    assert publish(gw.api_url, one, {"n": 3}, idempotency_key="bcast") == first[0]["result"]
    await c.close()


async def test_a_key_on_a_channel_without_history_still_delivers_once(gw: GatewayProcess) -> None:
    ch = f"tenant_{uuid.uuid4().hex[:8]}"
    c = await subscriber(gw, ch)
    assert publish(gw.api_url, ch, {"n": 1}, idempotency_key="k") == {}
    assert publish(gw.api_url, ch, {"n": 2}, idempotency_key="k") == {}
    assert await delivered_until_fence(gw, c, ch) == [{"n": 1}]
    await c.close()


async def test_with_the_official_cent_client(gw: GatewayProcess) -> None:
    ch, _ = fresh()
    c = await subscriber(gw, ch)
    client = CentClient(gw.api_url, TEST_API_KEY)
    try:
        first = await asyncio.to_thread(
            client.publish, PublishRequest(channel=ch, data={"n": 1}, idempotency_key="cent-1")
        )
        again = await asyncio.to_thread(
            client.publish, PublishRequest(channel=ch, data={"n": 1}, idempotency_key="cent-1")
        )
        assert (first.offset, first.epoch) == (again.offset, again.epoch) == (1, first.epoch)
        result = await asyncio.to_thread(
            client.broadcast, BroadcastRequest(channels=[ch], data={"n": 2}, idempotency_key="cent-1")
        )
        assert result.responses[0].result is not None and result.responses[0].result.offset == 1
    finally:
        client.close()
    assert await delivered_until_fence(gw, c, ch) == [{"n": 1}]
    await c.close()


async def test_an_overlong_key_is_a_bad_request(gw: GatewayProcess) -> None:
    reply = api(gw.api_url, "publish", {"channel": "critical:x", "data": {}, "idempotency_key": "k" * 257})
    assert reply == {"error": {"code": 107, "message": "bad request"}}
