"""Nothing published to a ``critical:`` channel is lost across a reconnect (issue 3), with npm ``centrifuge``.

The SDK runs under Node (``tests/support/jsclient.py``) and connects through a TCP proxy the
test controls: the connection is cut by the gateway (server API ``disconnect`` with a
reconnect code, a close frame) or killed on the client side without a close frame (the
driver's ``kill``), then the proxy keeps the client away while the test publishes.
Needs ``npm ci --prefix tests/js``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.api import api, publish
from tests.support.delivery import assert_exactly_once_in_order
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.jsclient import Event, JsDriver, on
from tests.support.proxy import TcpProxy
from tests.support.timing import seconds
from tests.support.tokens import GRANTS, token

CRITICAL = "critical:tenant_42"
BARE = "tenant_42"
FAST_RECONNECT = {"minReconnectDelay": 50, "maxReconnectDelay": 300}


@pytest.fixture
async def js(gateway: GatewayProcess) -> AsyncIterator[JsDriver]:
    async with JsDriver() as driver:
        driver.add_diagnostics("gateway log", gateway.log)
        yield driver


@pytest.fixture
async def proxy(gateway: GatewayProcess) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(gateway.port) as p:
        yield p


async def connected(js: JsDriver, cid: str, url: str, user: str, channels: list[str] | None = None) -> Event:
    await js.call(
        {
            "op": "client",
            "id": cid,
            "url": url,
            "token": token(user=user, channels=GRANTS if channels is None else channels),
            "options": FAST_RECONNECT,
            "connect": True,
        }
    )
    return await js.wait_for(on(cid, "connected", channel=None))


async def subscribed(js: JsDriver, cid: str, channel: str, options: dict[str, Any] | None = None) -> Event:
    await js.call({"op": "subscribe", "client": cid, "channel": channel, "options": options or {}})
    return await js.wait_for(on(cid, "subscribed", source="sub", channel=channel))


async def publish_seqs(gw: GatewayProcess, channel: str, tag: str, seqs: range) -> list[dict[str, Any]]:
    return [await asyncio.to_thread(publish, gw.api_url, channel, {"tag": tag, "seq": seq}) for seq in seqs]


def seqs_seen(js: JsDriver, cid: str, channel: str, tag: str, source: str = "sub") -> list[int]:
    events = js.select(on(cid, "publication", source=source, channel=channel))
    return [ev["ctx"]["data"]["seq"] for ev in events if ev["ctx"]["data"].get("tag") == tag]


async def wait_seq(js: JsDriver, cid: str, channel: str, tag: str, seq: int, source: str = "sub") -> list[int]:
    await js.wait_for(on(cid, "publication", source=source, channel=channel, data={"tag": tag, "seq": seq}))
    return seqs_seen(js, cid, channel, tag, source)


async def cut(how: str, js: JsDriver, gw: GatewayProcess, proxy: TcpProxy, cid: str, user: str) -> None:
    """Take the client away (it stays away until ``proxy.release()``) and wait until it noticed."""
    mark = js.mark()
    proxy.hold()
    if how == "server-close":
        body = {"user": user, "disconnect": {"code": 3011, "reason": "force reconnect"}}
        assert await asyncio.to_thread(api, gw.api_url, "disconnect", body) == {"result": {}}
    else:
        killed = await js.call({"op": "kill", "client": cid, "mode": "terminate"})
        assert killed == {"sockets": 1}
    connecting = await js.wait_for(on(cid, "connecting", channel=None), since=mark)
    expected = 3011 if how == "server-close" else 1  # 1 = transport closed (SDK-local code)
    assert connecting["ctx"]["code"] == expected, connecting


@pytest.mark.parametrize("how", ["server-close", "tcp-kill"])
async def test_ten_missed_publications_are_recovered_in_order_once(
    gateway: GatewayProcess, js: JsDriver, proxy: TcpProxy, how: str
) -> None:
    user, tag = f"js-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await connected(js, "c1", proxy.ws_url, user)
    fresh = await subscribed(js, "c1", CRITICAL)
    assert fresh["ctx"]["recoverable"] and not fresh["ctx"]["wasRecovering"]
    await subscribed(js, "c1", BARE)
    await publish_seqs(gateway, CRITICAL, tag, range(0, 1))
    await wait_seq(js, "c1", CRITICAL, tag, 0)

    await cut(how, js, gateway, proxy, "c1", user)
    away = await publish_seqs(gateway, CRITICAL, tag, range(1, 11))
    assert [r["offset"] for r in away] == list(range(away[0]["offset"], away[0]["offset"] + 10))
    await publish_seqs(gateway, BARE, tag, range(1, 4))
    mark = js.mark()
    proxy.release()

    again = await js.wait_for(on("c1", "subscribed", source="sub", channel=CRITICAL), since=mark)
    ctx = again["ctx"]
    assert ctx["wasRecovering"] is True and ctx["recovered"] is True, ctx
    assert ctx["hasRecoveredPublications"] is True
    await publish_seqs(gateway, CRITICAL, tag, range(11, 12))
    seen = await wait_seq(js, "c1", CRITICAL, tag, 11)
    assert_exactly_once_in_order(seen, list(range(12)))
    last = js.select(on("c1", "publication", source="sub", channel=CRITICAL))[-1]
    assert last["ctx"]["offset"] == away[-1]["offset"] + 1

    # The bare channel has no history: not recoverable, and the three publications are gone.
    bare = js.select(on("c1", "subscribed", source="sub", channel=BARE), since=mark)[-1]["ctx"]
    assert bare["recoverable"] is False and bare["wasRecovering"] is False and bare["recovered"] is False
    await publish_seqs(gateway, BARE, tag, range(4, 5))
    assert await wait_seq(js, "c1", BARE, tag, 4) == [4]


async def test_more_missed_than_history_holds_is_not_recovered(
    gateway: GatewayProcess, js: JsDriver, proxy: TcpProxy
) -> None:
    user, tag = f"js-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await connected(js, "c1", proxy.ws_url, user)
    await subscribed(js, "c1", CRITICAL)
    await publish_seqs(gateway, CRITICAL, tag, range(0, 1))
    await wait_seq(js, "c1", CRITICAL, tag, 0)

    await cut("tcp-kill", js, gateway, proxy, "c1", user)
    away = await publish_seqs(gateway, CRITICAL, tag, range(1, 61))  # history_size is 50
    mark = js.mark()
    proxy.release()

    again = await js.wait_for(on("c1", "subscribed", source="sub", channel=CRITICAL), since=mark)
    ctx = again["ctx"]
    assert ctx["wasRecovering"] is True and ctx["recovered"] is False, ctx
    assert ctx["hasRecoveredPublications"] is False
    assert ctx["streamPosition"]["offset"] == away[-1]["offset"]  # the app reloads from here
    await publish_seqs(gateway, CRITICAL, tag, range(61, 62))
    seen = await wait_seq(js, "c1", CRITICAL, tag, 61)
    assert seen == [0, 61], "no partial set of the missed publications may be presented"


async def test_a_restarted_gateway_has_a_new_epoch_and_says_not_recovered() -> None:
    tag = uuid.uuid4().hex
    with running_gateway(base_config()) as gw:
        async with JsDriver() as js:
            js.add_diagnostics("gateway log", gw.log)
            await connected(js, "c1", gw.ws_url, "5")
            before = (await subscribed(js, "c1", CRITICAL))["ctx"]["streamPosition"]
            await publish_seqs(gw, CRITICAL, tag, range(0, 3))
            await wait_seq(js, "c1", CRITICAL, tag, 2)
            mark = js.mark()

            await asyncio.to_thread(gw.restart)

            again = await js.wait_for(
                on("c1", "subscribed", source="sub", channel=CRITICAL), since=mark, timeout=seconds(15)
            )
            ctx = again["ctx"]
            assert ctx["wasRecovering"] is True and ctx["recovered"] is False, ctx
            assert ctx["streamPosition"]["epoch"] != before["epoch"]
            result = (await publish_seqs(gw, CRITICAL, tag, range(3, 4)))[0]
            assert result["offset"] == 1 and result["epoch"] == ctx["streamPosition"]["epoch"]
            assert await wait_seq(js, "c1", CRITICAL, tag, 3) == [0, 1, 2, 3]


async def test_since_from_a_published_position_misses_nothing(gateway: GatewayProcess, js: JsDriver) -> None:
    """Issue 3 §6: a page loads its state at the offset ``publish`` returned, then subscribes ``since`` it."""
    tag = uuid.uuid4().hex
    loaded = (await publish_seqs(gateway, CRITICAL, tag, range(0, 3)))[-1]  # the page's state is at seq 2
    await publish_seqs(gateway, CRITICAL, tag, range(3, 6))  # published before the page subscribes
    await connected(js, "c1", gateway.ws_url, "5")
    since = {"offset": loaded["offset"], "epoch": loaded["epoch"]}
    ev = await subscribed(js, "c1", CRITICAL, {"since": since})
    assert ev["ctx"]["wasRecovering"] is True and ev["ctx"]["recovered"] is True
    await publish_seqs(gateway, CRITICAL, tag, range(6, 7))
    assert_exactly_once_in_order(await wait_seq(js, "c1", CRITICAL, tag, 6), [3, 4, 5, 6])


async def test_server_side_subscriptions_recover_through_connect_subs() -> None:
    tag = uuid.uuid4().hex
    with running_gateway(base_config(token_channels="subscribe")) as gw:
        async with TcpProxy(gw.port) as proxy, JsDriver() as js:
            js.add_diagnostics("gateway log", gw.log)
            await connected(js, "c1", proxy.ws_url, "5", channels=[CRITICAL])
            fresh = await js.wait_for(on("c1", "subscribed", source="client", channel=CRITICAL))
            assert fresh["ctx"]["recoverable"] is True
            await publish_seqs(gw, CRITICAL, tag, range(0, 1))
            await wait_seq(js, "c1", CRITICAL, tag, 0, source="client")

            await cut("tcp-kill", js, gw, proxy, "c1", "5")
            await publish_seqs(gw, CRITICAL, tag, range(1, 11))
            mark = js.mark()
            proxy.release()

            again = await js.wait_for(on("c1", "subscribed", source="client", channel=CRITICAL), since=mark)
            assert again["ctx"]["wasRecovering"] is True and again["ctx"]["recovered"] is True, again
            await publish_seqs(gw, CRITICAL, tag, range(11, 12))
            seen = await wait_seq(js, "c1", CRITICAL, tag, 11, source="client")
            assert_exactly_once_in_order(seen, list(range(12)))
