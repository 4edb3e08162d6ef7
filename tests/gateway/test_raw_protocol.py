"""The client protocol over a real socket, with hand-written frames (spec §1-§5)."""

from __future__ import annotations

import json

import pytest

from tests.support.api import publish
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.tokens import REFUSED, token


async def test_connect_and_subscribe_in_one_frame_are_answered_in_order(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    frame = (
        json.dumps({"id": 57, "connect": {"token": token(), "name": "js"}})
        + "\n"
        + json.dumps({"id": 58, "subscribe": {"channel": "critical:tenant_42", "flag": 1}})
    )
    await c.send(frame)
    messages = await c.read_frame()
    while len(messages) < 2:
        messages += await c.read_frame()
    assert [m["id"] for m in messages[:2]] == [57, 58]
    connect = messages[0]["connect"]
    assert set(connect) >= {"client", "version", "ping", "pong", "expires", "ttl"}
    assert connect["ping"] == 25 and connect["pong"] is True and connect["expires"] is True
    assert 590 <= connect["ttl"] <= 600
    sub = messages[1]["subscribe"]
    assert sub["recoverable"] is True and sub["positioned"] is True and len(sub["epoch"]) == 4
    assert "offset" not in sub and "publications" not in sub and "recovered" not in sub
    await c.close()


async def test_publication_push_shape(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token())
    reply = await c.subscribe("tenant_42")
    assert reply == {"id": reply["id"], "subscribe": {}}
    publish(gateway.api_url, "tenant_42", {"order": 1})
    push = await c.push()
    assert push == {"channel": "tenant_42", "pub": {"data": {"order": 1}}}
    await c.close()


async def test_offsets_on_history_channels(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token())
    sub = (await c.subscribe("critical:tenant_42"))["subscribe"]
    top = sub.get("offset", 0)
    result = publish(gateway.api_url, "critical:tenant_42", {"n": 1})
    assert result["offset"] == top + 1 and result["epoch"] == sub["epoch"]
    push = await c.push()
    assert push == {"channel": "critical:tenant_42", "pub": {"data": {"n": 1}, "offset": top + 1}}
    await c.close()


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        "",
        '{"id":1,"connect":{}}\n\n{"id":2,"connect":{}}',
        '{"id":"x","connect":{}}',
    ],
    ids=["bad-json", "empty", "blank-line", "wrong-type"],
)
async def test_bad_frames_close_with_3501_and_leave_others_alone(gateway: GatewayProcess, frame: str) -> None:
    bystander = await RawClient.open(gateway.ws_url)
    await bystander.connect(token())
    await bystander.subscribe("tenant_42")
    bad = await RawClient.open(gateway.ws_url)
    await bad.send(frame)
    assert await bad.closed() == (3501, "bad request")
    publish(gateway.api_url, "tenant_42", {"still": "here"})
    assert (await bystander.push())["pub"]["data"] == {"still": "here"}
    await bystander.close()


async def test_commands_before_connect_are_refused(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.send(json.dumps({"id": 1, "subscribe": {"channel": "tenant_42"}}))
    assert await c.closed() == (3501, "bad request")


async def test_second_connect_is_refused(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token())
    await c.send(json.dumps({"id": 2, "connect": {"token": token()}}))
    assert await c.closed() == (3501, "bad request")


async def test_command_without_a_known_method_is_refused(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token())
    await c.send(json.dumps({"id": 2, "ping": {}}))
    assert await c.closed() == (3501, "bad request")


async def test_send_is_not_available(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token())
    await c.send(json.dumps({"send": {"data": {"x": 1}}}))
    assert await c.closed() == (3508, "not available")


async def test_rpc_is_not_available(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token())
    reply = await c.command("rpc", {"method": "getUser", "data": {}})
    assert reply["error"] == {"code": 108, "message": "not available"}
    await c.close()


async def test_unprompted_pong_is_refused(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token())
    await c.send("{}")
    assert await c.closed() == (3501, "bad request")


async def test_connect_without_credentials(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.send(json.dumps({"id": 1, "connect": {}}))
    assert await c.closed() == (3501, "bad request")


async def test_anonymous_connect_when_allowed() -> None:
    cfg = base_config(
        allow_anonymous_connect_without_token=True, allow_subscribe_for_client=True, allow_subscribe_for_anonymous=True
    )
    with running_gateway(cfg) as gw:
        c = await RawClient.open(gw.ws_url)
        reply = await c.connect()
        assert "expires" not in reply["connect"]
        assert await c.subscribe("news") == {"id": 2, "subscribe": {}}
        await c.close()


async def test_subscribe_errors(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token())
    assert (await c.subscribe("nope:tenant_42"))["error"] == {"code": 102, "message": "unknown channel"}
    for refused in REFUSED:
        assert (await c.subscribe(refused))["error"]["code"] == 103, refused
    assert (await c.subscribe("x" * 256))["error"] == {"code": 107, "message": "bad request"}
    assert "subscribe" in await c.subscribe("tenant_42")
    assert (await c.subscribe("tenant_42"))["error"] == {"code": 105, "message": "already subscribed"}
    assert await c.command("unsubscribe", {"channel": "tenant_42"}) == {"id": c._next_id, "unsubscribe": {}}
    assert await c.command("unsubscribe", {"channel": "never"}) == {"id": c._next_id, "unsubscribe": {}}
    assert "subscribe" in await c.subscribe("tenant_42")
    await c.send(json.dumps({"id": 99, "subscribe": {"channel": ""}}))
    assert await c.closed() == (3501, "bad request")


async def test_client_publish_needs_permission(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token())
    reply = await c.command("publish", {"channel": "tenant_42", "data": {"x": 1}})
    assert reply["error"] == {"code": 103, "message": "permission denied"}
    await c.close()


async def test_client_publish_for_subscribers_carries_publisher_info() -> None:
    cfg = base_config(allow_publish_for_subscriber=True)
    with running_gateway(cfg) as gw:
        c = await RawClient.open(gw.ws_url)
        await c.connect(token(info={"name": "Ann"}))
        assert (await c.command("publish", {"channel": "tenant_42", "data": {"x": 1}}))["error"]["code"] == 103
        await c.subscribe("tenant_42")
        assert "publish" in await c.command("publish", {"channel": "tenant_42", "data": {"x": 1}})
        push = await c.push()
        assert push["pub"]["data"] == {"x": 1}
        assert push["pub"]["info"]["user"] == "5" and push["pub"]["info"]["conn_info"] == {"name": "Ann"}
        await c.send(json.dumps({"id": 50, "publish": {"channel": "tenant_42"}}))
        assert await c.closed() == (3501, "bad request")


async def test_presence_and_history_need_the_feature_and_permission(gateway: GatewayProcess) -> None:
    c = await RawClient.open(gateway.ws_url)
    await c.connect(token())
    await c.subscribe("tenant_42")
    assert (await c.command("presence", {"channel": "tenant_42"}))["error"]["code"] == 108
    assert (await c.command("presence_stats", {"channel": "tenant_42"}))["error"]["code"] == 108
    assert (await c.command("history", {"channel": "tenant_42"}))["error"]["code"] == 108
    assert (await c.command("history", {"channel": "critical:tenant_42"}))["error"]["code"] == 103
    assert (await c.command("presence", {"channel": "nope:x"}))["error"]["code"] == 102
    await c.close()


async def test_origin_check() -> None:
    with running_gateway(base_config()) as gw:
        with pytest.raises(Exception, match="403"):
            await RawClient.open(gw.ws_url, origin="https://evil.example")  # type: ignore[arg-type]
        c = await RawClient.open(gw.ws_url)  # no Origin header: allowed
        await c.close()
    with running_gateway(base_config(allowed_origins=["https://*.example.com"])) as gw:
        c = await RawClient.open(gw.ws_url, origin="https://app.example.com")  # type: ignore[arg-type]
        await c.close()
        with pytest.raises(Exception, match="403"):
            await RawClient.open(gw.ws_url, origin="https://example.org")  # type: ignore[arg-type]


def test_health(gateway: GatewayProcess) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{gateway.http_url}/health") as resp:
        assert resp.status == 200
