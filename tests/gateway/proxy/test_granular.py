"""Granular proxy mode (proxy.md §1.2): named proxies chosen per event, each with its own
headers, and RPC methods routed by namespace (104 undeclared, 108 without a proxy)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from centrifuge import Client

from tests.support.app_backend import AppBackend
from tests.support.gateway import GatewayProcess, base_config, fresh_channel, running_gateway
from tests.support.pyclient import Recorder, close_client
from tests.support.raw import RawClient
from tests.support.timing import duration


@pytest.fixture(scope="module")
def gateway(backend: AppBackend) -> Iterator[GatewayProcess]:
    # Each named proxy posts to its own path, so the backend records its name as the call's kind.
    config = base_config(
        granular_proxy_mode=True,
        proxies=[
            {"name": "auth", "endpoint": backend.url("auth"), "timeout": duration(1), "http_headers": ["Cookie"]},
            {"name": "chat", "endpoint": backend.url("chat"), "static_http_headers": {"X-Service": "chat"}},
        ],
        connect_proxy_name="auth",
        rpc_namespaces=[{"name": "chat", "rpc_proxy_name": "chat"}, {"name": "off"}],
        namespaces=[{"name": "room", "subscribe_proxy_name": "chat", "publish_proxy_name": "chat"}],
    )
    with running_gateway(config) as gw:
        yield gw


async def test_each_event_goes_to_its_named_proxy_with_its_own_headers(
    gateway: GatewayProcess, backend: AppBackend
) -> None:
    backend.answer("auth", {"result": {"user": "g1"}})
    backend.answer("chat", {"result": {}})
    channel = fresh_channel("room")
    recorder = Recorder()
    client = Client(gateway.ws_url, events=recorder.client_handler(), headers={"Cookie": "sid=g"})
    sub = client.new_subscription(channel, events=recorder.sub_handler(channel))
    await client.connect()
    await sub.subscribe()
    await recorder.wait_for("sub:subscribed", channel)
    [connect] = backend.calls("auth")
    [subscribe] = backend.calls("chat")
    assert "channels" not in connect.body and connect.headers["cookie"] == "sid=g"
    assert subscribe.body["channel"] == channel and subscribe.body["user"] == "g1"
    assert subscribe.headers["x-service"] == "chat"
    assert "cookie" not in subscribe.headers  # the chat proxy forwards no client headers
    assert "x-service" not in connect.headers
    await close_client(client)


async def test_rpc_methods_are_routed_by_namespace(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("auth", {"result": {"user": "g2"}})
    backend.answer("chat", lambda call: {"result": {"data": {"method": call.body["method"]}}})
    raw = await RawClient.open(gateway.ws_url)
    await raw.connect()
    reply = await raw.command("rpc", {"method": "chat:send", "data": {"t": 1}})
    assert reply["rpc"] == {"data": {"method": "chat:send"}}
    for method, code in (("other:x", 104), ("off:x", 108), ("bare", 108)):
        reply = await raw.command("rpc", {"method": method})
        assert reply["error"]["code"] == code, (method, reply)
    assert len(backend.calls("chat")) == 1
    await raw.close()
