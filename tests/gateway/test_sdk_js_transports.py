"""centrifuge-js over every transport and encoding it offers (issue 12): the scenarios of the
WebSocket JSON tests, run over HTTP streaming and SSE (bidirectional emulation), Protobuf over
WebSocket and Protobuf over HTTP streaming, with WebSocket JSON beside them as the reference.

The SDK is forced onto one transport with its ``transports`` array (and ``emulationEndpoint``),
or onto Protobuf with its Protobuf build. Every client goes through a TCP proxy the test can
cut, so a reconnect is a real loss of the stream and of the emulation requests' connections.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.support.api import api, publish
from tests.support.delivery import assert_exactly_once_in_order
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.jsclient import Event, JsDriver, on
from tests.support.proxy import TcpProxy
from tests.support.tokens import token

CHAT = "chat:room"  # presence, history, recovery; any authenticated user may subscribe and publish
FAST_RECONNECT = {"minReconnectDelay": 50, "maxReconnectDelay": 300}

# (transport, protocol)
TRANSPORTS = [
    ("websocket", "json"),
    ("http_stream", "json"),
    ("sse", "json"),
    ("websocket", "protobuf"),
    ("http_stream", "protobuf"),
]


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    chat = {
        "name": "chat",
        "presence": True,
        "history_size": 100,
        "history_ttl": "300s",
        "force_recovery": True,
        "allow_subscribe_for_client": True,
        "allow_publish_for_subscriber": True,
        "allow_presence_for_subscriber": True,
        "allow_history_for_subscriber": True,
    }
    live = {**chat, "name": "live", "presence": False, "allowed_delta_types": ["fossil"], "delta_publish": True}
    with running_gateway(base_config(http_stream=True, sse=True, namespaces=[chat, live])) as gw:
        yield gw


@pytest.fixture
async def js(gateway: GatewayProcess) -> AsyncIterator[JsDriver]:
    async with JsDriver() as driver:
        driver.add_diagnostics("gateway log", gateway.log)
        yield driver


@pytest.fixture
async def proxy(gateway: GatewayProcess) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(gateway.port) as p:
        yield p


def client_spec(port: int, transport: str, protocol: str) -> dict[str, Any]:
    """The driver's ``client`` fields that force the SDK onto one transport and encoding."""
    base = f"127.0.0.1:{port}"
    options: dict[str, Any] = dict(FAST_RECONNECT)
    url: Any
    if transport == "websocket":
        url = f"ws://{base}/connection/websocket"
    else:
        url = [{"transport": transport, "endpoint": f"http://{base}/connection/{transport}"}]
        options["emulationEndpoint"] = f"http://{base}/emulation"
    return {"url": url, "options": options, "protobuf": protocol == "protobuf"}


async def connected(js: JsDriver, cid: str, proxy: TcpProxy, transport: str, protocol: str, user: str) -> Event:
    spec = client_spec(proxy.port, transport, protocol)
    await js.call({"op": "client", "id": cid, "token": token(user=user, channels=[]), "connect": True, **spec})
    event = await js.wait_for(on(cid, "connected", channel=None))
    assert event["ctx"]["transport"] == transport, event
    return event


async def subscribed(js: JsDriver, cid: str, channel: str, since: int = 0) -> Event:
    await js.call({"op": "subscribe", "client": cid, "channel": channel})
    return await js.wait_for(on(cid, "subscribed", source="sub", channel=channel), since=since)


def seqs_seen(js: JsDriver, cid: str, channel: str, tag: str) -> list[int]:
    events = js.select(on(cid, "publication", source="sub", channel=channel))
    return [ev["ctx"]["data"]["seq"] for ev in events if ev["ctx"]["data"].get("tag") == tag]


async def wait_seq(js: JsDriver, cid: str, channel: str, tag: str, seq: int) -> list[int]:
    await js.wait_for(on(cid, "publication", source="sub", channel=channel, data={"tag": tag, "seq": seq}))
    return seqs_seen(js, cid, channel, tag)


async def publish_seqs(gw: GatewayProcess, channel: str, tag: str, seqs: range) -> list[dict[str, Any]]:
    return [await asyncio.to_thread(publish, gw.api_url, channel, {"tag": tag, "seq": seq}) for seq in seqs]


def room() -> str:
    return f"{CHAT}_{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(("transport", "protocol"), TRANSPORTS)
async def test_subscribe_publish_presence_history_and_rpc(
    gateway: GatewayProcess, js: JsDriver, proxy: TcpProxy, transport: str, protocol: str
) -> None:
    channel = room()
    await connected(js, "a", proxy, transport, protocol, "alice")
    await connected(js, "b", proxy, transport, protocol, "bob")
    ctx = (await subscribed(js, "a", channel))["ctx"]
    assert ctx["recoverable"] is True and ctx["positioned"] is True
    await subscribed(js, "b", channel)

    # A client publishes; both receive it, with the publisher's info and a stream offset.
    await js.call({"op": "publish", "client": "a", "channel": channel, "data": {"text": "hi", "n": 1}})
    for cid in ("a", "b"):
        pub = await js.wait_for(on(cid, "publication", source="sub", channel=channel, data={"text": "hi", "n": 1}))
        assert pub["ctx"]["offset"] == 1 and pub["ctx"]["info"]["user"] == "alice"
    # The server API publishes; both receive it too.
    await asyncio.to_thread(publish, gateway.api_url, channel, {"text": "from the server"})
    await js.wait_for(on("b", "publication", source="sub", channel=channel, data={"text": "from the server"}))

    presence = await js.call({"op": "presence", "client": "a", "channel": channel})
    assert sorted(info["user"] for info in presence["clients"].values()) == ["alice", "bob"]
    stats = await js.call({"op": "presenceStats", "client": "b", "channel": channel})
    assert stats == {"numClients": 2, "numUsers": 2}
    history = await js.call({"op": "history", "client": "b", "channel": channel, "options": {"limit": 10}})
    assert [p["data"] for p in history["publications"]] == [{"text": "hi", "n": 1}, {"text": "from the server"}]
    assert history["offset"] == 2

    with pytest.raises(Exception) as refused:
        await js.call({"op": "rpc", "client": "a", "method": "anything", "data": {}})
    assert getattr(refused.value, "code", None) == 108  # no RPC handler: "not available"
    with pytest.raises(Exception) as denied:
        await js.call({"op": "publish", "client": "a", "channel": "elsewhere", "data": {"x": 1}})
    assert getattr(denied.value, "code", None) == 103
    state = await js.call({"op": "state", "client": "a"})
    assert state["state"] == "connected"  # errors answer one command; the connection stays


@pytest.mark.parametrize(("transport", "protocol"), TRANSPORTS)
@pytest.mark.parametrize("how", ["server-close", "tcp-cut"])
async def test_reconnect_recovers_what_was_missed(
    gateway: GatewayProcess, js: JsDriver, proxy: TcpProxy, transport: str, protocol: str, how: str
) -> None:
    channel, user, tag = room(), f"u-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await connected(js, "c", proxy, transport, protocol, user)
    await subscribed(js, "c", channel)
    await publish_seqs(gateway, channel, tag, range(0, 1))
    await wait_seq(js, "c", channel, tag, 0)

    mark = js.mark()
    proxy.hold()
    if how == "server-close":
        body = {"user": user, "disconnect": {"code": 3011, "reason": "force reconnect"}}
        assert await asyncio.to_thread(api, gateway.api_url, "disconnect", body) == {"result": {}}
    else:
        assert proxy.cut_all() >= 1
    connecting = await js.wait_for(on("c", "connecting", channel=None), since=mark)
    if how == "server-close":
        assert connecting["ctx"]["code"] == 3011, connecting  # the close frame or disconnect push
    await publish_seqs(gateway, channel, tag, range(1, 11))
    proxy.release()

    again = await js.wait_for(on("c", "subscribed", source="sub", channel=channel), since=mark)
    assert again["ctx"]["wasRecovering"] is True and again["ctx"]["recovered"] is True, again
    await publish_seqs(gateway, channel, tag, range(11, 12))
    seen = await wait_seq(js, "c", channel, tag, 11)
    assert_exactly_once_in_order(seen, list(range(12)))
    connected_again = js.select(on("c", "connected", channel=None), since=mark)
    assert connected_again and connected_again[-1]["ctx"]["transport"] == transport


@pytest.mark.parametrize(("transport", "protocol"), [t for t in TRANSPORTS if t[0] != "websocket"])
async def test_a_terminal_disconnect_reaches_an_emulation_client_as_a_push(
    gateway: GatewayProcess, js: JsDriver, proxy: TcpProxy, transport: str, protocol: str
) -> None:
    """Emulation has no close frame: the disconnect push carries the code (spec §1.8)."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    await connected(js, "c", proxy, transport, protocol, user)
    mark = js.mark()
    await asyncio.to_thread(api, gateway.api_url, "disconnect", {"user": user})
    gone = await js.wait_for(on("c", "disconnected", channel=None), since=mark)
    assert gone["ctx"]["code"] == 3503 and gone["ctx"]["reason"] == "force disconnect"


@pytest.mark.parametrize(("transport", "protocol"), TRANSPORTS)
async def test_fossil_deltas_decode_in_the_sdk_to_what_a_plain_subscriber_gets(
    gateway: GatewayProcess, js: JsDriver, proxy: TcpProxy, transport: str, protocol: str
) -> None:
    """The SDK's own fossil decoder applies the gateway's deltas (``live`` has ``delta_publish``)."""
    channel = f"live:{uuid.uuid4().hex[:8]}"
    await connected(js, "d", proxy, transport, protocol, "d")
    await connected(js, "p", proxy, transport, protocol, "p")
    await js.call({"op": "subscribe", "client": "d", "channel": channel, "options": {"delta": "fossil"}})
    await js.wait_for(on("d", "subscribed", source="sub", channel=channel))
    await subscribed(js, "p", channel)
    docs = [
        {"seq": seq, "rows": [{"id": i, "state": ("open", "done")[(i + seq) % 2], "note": "ünï ✓"} for i in range(12)]}
        for seq in range(20)
    ]
    for doc in docs:
        await asyncio.to_thread(publish, gateway.api_url, channel, doc)
    for cid in ("d", "p"):
        await js.wait_for(on(cid, "publication", source="sub", channel=channel, data=docs[-1]))
    for cid in ("d", "p"):
        got = [ev["ctx"]["data"] for ev in js.select(on(cid, "publication", source="sub", channel=channel))]
        assert got == docs, cid
    stats = await js.call({"op": "deltaStats", "client": "d", "channel": channel})
    # The first whole, then deltas, decoded by the SDK's fossil decoder.
    assert stats["numFullPayloads"] == 1 and stats["numDeltaPayloads"] == len(docs) - 1, stats
