"""Protection: size limit, stale connections, pongs, slow consumers, channel and user limits."""

from __future__ import annotations

import asyncio
import json

from websockets.exceptions import ConnectionClosed

from tests.support.api import api, publish
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.timing import duration, seconds, wait_until
from tests.support.tokens import token


async def test_oversize_frame_closes_with_1009() -> None:
    with running_gateway(base_config(websocket_message_size_limit=1024)) as gw:
        bystander = await RawClient.open(gw.ws_url)
        await bystander.connect(token())
        c = await RawClient.open(gw.ws_url)
        await c.connect(token())
        await c.send(json.dumps({"id": 2, "publish": {"channel": "tenant_42", "data": "x" * 2000}}))
        code, _ = await c.closed()
        assert code == 1009
        assert "subscribe" in await bystander.subscribe("tenant_42")
        await bystander.close()


async def test_connection_that_never_connects_goes_stale() -> None:
    with running_gateway(base_config(client_stale_close_delay="1s")) as gw:
        c = await RawClient.open(gw.ws_url)
        started = asyncio.get_running_loop().time()
        assert await c.closed(timeout=seconds(5)) == (3502, "stale")
        assert asyncio.get_running_loop().time() - started >= 0.9


async def test_missing_pong_disconnects_with_3012_and_answered_pings_keep_the_connection() -> None:
    cfg = base_config(ping_interval=duration(1), pong_timeout=duration(0.5))
    with running_gateway(cfg) as gw:
        silent = await RawClient.open(gw.ws_url)
        reply = await silent.connect(token())
        assert reply["connect"]["ping"] == max(1, round(seconds(1))) and reply["connect"]["pong"] is True

        polite = await RawClient.open(gw.ws_url)
        await polite.connect(token())

        async def answer_pings(count: int) -> None:
            """Answer every ping until ``count`` were answered (reading fails if the gateway closes)."""
            while polite.pings < count:
                messages = await polite.read_frame(timeout=seconds(3))
                if {} in messages:
                    await polite.send("{}")

        answering = asyncio.create_task(answer_pings(3))
        assert await silent.closed(timeout=seconds(5)) == (3012, "no pong")
        await asyncio.wait_for(answering, seconds(10))  # three pings: three pongs in time, still open
        assert (await polite.subscribe("tenant_42"))["subscribe"] == {}
        await polite.close()


async def test_slow_subscriber_is_cut_off_with_3008_and_never_slows_the_others() -> None:
    queue_limit = 256 * 1024
    with running_gateway(base_config(client_queue_max_size=queue_limit)) as gw:
        # max_queue=1: the client library stops reading the socket after one unread frame.
        slow = await RawClient.open(gw.ws_url, max_queue=1)
        await slow.connect(token())
        await slow.subscribe("tenant_42")
        fast = await RawClient.open(gw.ws_url)
        await fast.connect(token())
        await fast.subscribe("tenant_42")

        payload = "x" * 60_000
        sent = 0
        slow_dropped = False
        received: list[int] = []
        for seq in range(400):
            publish(gw.api_url, "tenant_42", {"seq": seq, "pad": payload})
            sent += 1
            while True:
                try:
                    push = await fast.push(timeout=seconds(5))
                except TimeoutError:
                    raise AssertionError(f"fast subscriber stalled after {len(received)} messages") from None
                received.append(push["pub"]["data"]["seq"])
                if received[-1] == seq:
                    break
            channels = api(gw.api_url, "channels", {})["result"]["channels"]
            if channels["tenant_42"].get("num_clients") == 1:
                slow_dropped = True
                break
        assert slow_dropped, "the slow subscriber was never disconnected"
        assert received == list(range(sent))
        code, reason = await slow.closed(timeout=seconds(5))
        assert (code, reason) == (3008, "slow")
        publish(gw.api_url, "tenant_42", {"seq": "after"})
        assert (await fast.push())["pub"]["data"]["seq"] == "after"
        await fast.close()


async def test_channel_limit() -> None:
    with running_gateway(base_config(client_channel_limit=2, allow_subscribe_for_client=True)) as gw:
        c = await RawClient.open(gw.ws_url)
        await c.connect(token())
        assert "subscribe" in await c.subscribe("a")
        assert "subscribe" in await c.subscribe("b")
        assert (await c.subscribe("c"))["error"] == {"code": 106, "message": "limit exceeded"}
        await c.close()


async def connected_or_refused(gw: GatewayProcess) -> RawClient | None:
    """A connected client of user 5, or None when the gateway closed it over the user's limit."""
    c = await RawClient.open(gw.ws_url)
    try:
        reply = await c.connect(token())
    except ConnectionClosed as exc:
        assert exc.rcvd is not None and (exc.rcvd.code, exc.rcvd.reason) == (3504, "connection limit"), exc
        return None
    assert "connect" in reply, reply
    return c


async def test_user_connection_limit() -> None:
    with running_gateway(base_config(client_user_connection_limit=2)) as gw:
        first = await RawClient.open(gw.ws_url)
        await first.connect(token())
        second = await RawClient.open(gw.ws_url)
        await second.connect(token())
        third = await RawClient.open(gw.ws_url)
        await third.send(json.dumps({"id": 1, "connect": {"token": token()}}))
        assert await third.closed() == (3504, "connection limit")
        other_user = await RawClient.open(gw.ws_url)
        assert "connect" in await other_user.connect(token(user="6"))
        await first.close()
        # The slot is freed once the gateway has seen the close: poll for it.
        again = await wait_until(lambda: connected_or_refused(gw), "the freed slot to admit the user again")
        for c in (second, other_user, again):
            await c.close()


async def test_server_side_subscriptions_over_the_channel_limit() -> None:
    cfg = base_config(token_channels="subscribe", client_channel_limit=2)
    with running_gateway(cfg) as gw:
        c = await RawClient.open(gw.ws_url)
        await c.send(json.dumps({"id": 1, "connect": {"token": token(channels=["a", "b", "c"])}}))
        assert await c.closed() == (3505, "channel limit")
