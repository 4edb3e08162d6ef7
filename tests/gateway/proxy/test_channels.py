"""Subscribe, publish and RPC proxies (proxy.md §3.3, §3.4, §3.6, §4, §7): the namespaces that
ask for them consult the application backend; the answers reach the SDK as the spec says."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from centrifuge import Client
from centrifuge.exceptions import ReplyError

from tests.support.api import api
from tests.support.app_backend import AppBackend, Reply
from tests.support.gateway import GatewayProcess, base_config, fresh_channel, running_gateway
from tests.support.pyclient import Recorder, close_client
from tests.support.raw import RawClient
from tests.support.timing import duration, seconds
from tests.support.tokens import token

NAMESPACES = [
    {"name": "room", "proxy_subscribe": True, "proxy_publish": True, "presence": True},
    {"name": "plain", "allow_subscribe_for_client": True},
]


@pytest.fixture(scope="module")
def gateway(backend: AppBackend) -> Iterator[GatewayProcess]:
    config = base_config(
        **backend.endpoints("subscribe", "publish", "rpc", timeout=duration(1)),
        proxy_http_headers=["Cookie"],
        namespaces=NAMESPACES,
    )
    with running_gateway(config) as gw:
        yield gw


@pytest.fixture
async def connected(gateway: GatewayProcess) -> AsyncIterator[tuple[Client, Recorder]]:
    recorder = Recorder()
    client = Client(
        gateway.ws_url,
        token=token(user="5"),
        events=recorder.client_handler(),
        headers={"Cookie": "sessionid=s5"},
    )
    await client.connect()
    await recorder.wait_for("connected")
    yield client, recorder
    await close_client(client)


def common(call_body: dict[str, object]) -> dict[str, object]:
    return {k: call_body[k] for k in ("transport", "protocol", "encoding", "user")}


async def test_subscribe_allowed_by_the_backend(
    connected: tuple[Client, Recorder], gateway: GatewayProcess, backend: AppBackend
) -> None:
    client, recorder = connected
    channel = fresh_channel("room")
    backend.answer("subscribe", {"result": {"info": {"seat": 3}, "data": {"topic": "hi"}}})
    sub = client.new_subscription(channel, events=recorder.sub_handler(channel), data={"want": "in"})
    await sub.subscribe()
    subscribed = await recorder.wait_for("sub:subscribed", channel)
    assert subscribed.ctx.data == {"topic": "hi"}
    [call] = backend.calls("subscribe")
    assert call.body["channel"] == channel and call.body["data"] == {"want": "in"}
    assert call.body["client"] == client.client_id
    assert common(call.body) == {"transport": "websocket", "protocol": "json", "encoding": "json", "user": "5"}
    assert call.headers["cookie"] == "sessionid=s5"  # the upgrade request's, on every later call
    presence = api(gateway.api_url, "presence", {"channel": channel})["result"]["presence"]
    assert [p.get("chan_info") for p in presence.values()] == [{"seat": 3}]


async def test_subscribe_refused_with_a_custom_error(connected: tuple[Client, Recorder], backend: AppBackend) -> None:
    client, recorder = connected
    channel = fresh_channel("room")
    backend.answer("subscribe", {"error": {"code": 1403, "message": "not your room"}})
    sub = client.new_subscription(channel, events=recorder.sub_handler(channel))
    await sub.subscribe()
    event = await recorder.wait_for("sub:unsubscribed", channel)
    assert event.ctx.code == 1403
    assert not recorder.of("disconnected")


async def test_subscribe_disconnect_closes_the_connection(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("subscribe", {"disconnect": {"code": 4403, "reason": "go away"}})
    raw = await RawClient.open(gateway.ws_url)
    await raw.connect(token(user="5"))
    await raw.send(f'{{"id":2,"subscribe":{{"channel":"{fresh_channel("room")}"}}}}')
    assert await raw.closed() == (4403, "go away")


async def test_a_granted_channel_needs_no_backend(gateway: GatewayProcess, backend: AppBackend) -> None:
    channel = fresh_channel("room")
    backend.answer("subscribe", {"error": {"code": 1403, "message": "must not be asked"}})
    raw = await RawClient.open(gateway.ws_url)
    await raw.connect(token(user="5", channels=[channel]))
    reply = await raw.subscribe(channel)
    assert "subscribe" in reply, reply
    assert backend.calls() == []
    await raw.close()


async def test_namespace_without_proxy_subscribe_is_not_proxied(gateway: GatewayProcess, backend: AppBackend) -> None:
    raw = await RawClient.open(gateway.ws_url)
    await raw.connect(token(user="5"))
    reply = await raw.subscribe(fresh_channel("plain"))
    assert "subscribe" in reply, reply
    assert backend.calls() == []
    await raw.close()


@pytest.mark.parametrize(
    "failure", [Reply(500), Reply(200, b"{"), Reply(200, b"{}", delay=3.0)], ids=["500", "invalid-json", "timeout"]
)
async def test_subscribe_failure_is_a_temporary_internal_error(
    gateway: GatewayProcess, backend: AppBackend, failure: Reply
) -> None:
    failure.delay *= seconds(1)
    backend.answer("subscribe", failure)
    raw = await RawClient.open(gateway.ws_url)
    await raw.connect(token(user="5"))
    reply = await raw.subscribe(fresh_channel("room"))
    assert reply["error"] == {"code": 100, "message": "internal server error", "temporary": True}
    await raw.close()


async def test_publish_rejected_with_a_custom_error(connected: tuple[Client, Recorder], backend: AppBackend) -> None:
    client, _ = connected
    backend.answer("publish", {"error": {"code": 1429, "message": "slow down"}})
    with pytest.raises(ReplyError) as caught:
        await client.publish(fresh_channel("room"), {"text": "spam"})
    assert (caught.value.code, caught.value.message) == (1429, "slow down")


async def test_publish_accepted_delivers_the_rewritten_data(
    connected: tuple[Client, Recorder], backend: AppBackend
) -> None:
    client, recorder = connected
    channel = fresh_channel("room")
    backend.answer("subscribe", {"result": {}})
    backend.answer("publish", lambda call: {"result": {"data": {"text": call.body["data"]["text"].upper()}}})
    sub = client.new_subscription(channel, events=recorder.sub_handler(channel))
    await sub.subscribe()
    await recorder.wait_for("sub:subscribed", channel)
    await client.publish(channel, {"text": "hello"})
    pub = await recorder.wait_for("sub:publication", channel)
    assert pub.ctx.pub.data == {"text": "HELLO"}
    [call] = backend.calls("publish")
    assert (call.body["channel"], call.body["data"], call.body["user"]) == (channel, {"text": "hello"}, "5")


async def test_publish_with_empty_result_publishes_the_original(
    connected: tuple[Client, Recorder], backend: AppBackend
) -> None:
    client, recorder = connected
    channel = fresh_channel("room")
    backend.answer("subscribe", {})
    backend.answer("publish", {})
    sub = client.new_subscription(channel, events=recorder.sub_handler(channel))
    await sub.subscribe()
    await recorder.wait_for("sub:subscribed", channel)
    await client.publish(channel, {"kept": True})
    pub = await recorder.wait_for("sub:publication", channel)
    assert pub.ctx.pub.data == {"kept": True}


async def test_publish_without_proxy_publish_needs_the_namespace_option(
    connected: tuple[Client, Recorder], backend: AppBackend
) -> None:
    client, _ = connected
    with pytest.raises(ReplyError) as caught:
        await client.publish(fresh_channel("plain"), {"x": 1})
    assert caught.value.code == 103
    assert backend.calls() == []


async def test_rpc_returns_the_backend_data(connected: tuple[Client, Recorder], backend: AppBackend) -> None:
    client, _ = connected
    backend.answer("rpc", lambda call: {"result": {"data": {"echo": call.body["data"], "m": call.body["method"]}}})
    result = await client.rpc("getUser", {"id": 9})
    assert result.data == {"echo": {"id": 9}, "m": "getUser"}
    [call] = backend.calls("rpc")
    assert call.body["user"] == "5" and call.body["client"] == client.client_id


async def test_rpc_custom_error(connected: tuple[Client, Recorder], backend: AppBackend) -> None:
    client, _ = connected
    backend.answer("rpc", {"error": {"code": 1404, "message": "no such user", "temporary": False}})
    with pytest.raises(ReplyError) as caught:
        await client.rpc("getUser", {"id": 0})
    assert (caught.value.code, caught.value.message, caught.value.temporary) == (1404, "no such user", False)


async def test_rpc_empty_result_is_an_empty_reply(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("rpc", {})
    raw = await RawClient.open(gateway.ws_url)
    await raw.connect(token(user="5"))
    reply = await raw.command("rpc", {"method": "noop"})
    assert reply["rpc"] == {}
    await raw.close()


@pytest.mark.parametrize("failure", [Reply(502), Reply(200, b"[1]"), Reply(200, b"{}", delay=3.0)])
async def test_rpc_failure_is_error_100(
    connected: tuple[Client, Recorder], backend: AppBackend, failure: Reply
) -> None:
    client, recorder = connected
    failure.delay *= seconds(1)
    backend.answer("rpc", failure)
    with pytest.raises(ReplyError) as caught:
        await client.rpc("slow", {})
    assert (caught.value.code, caught.value.temporary) == (100, True)
    assert not recorder.of("disconnected")
