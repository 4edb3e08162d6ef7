"""The server HTTP API through the official ``cent`` client and raw HTTP (spec §8)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from cent import (
    BatchRequest,
    BroadcastRequest,
    CentApiResponseError,
    CentTransportError,
    CentUnauthorizedError,
    ChannelsRequest,
    Client,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    InvalidateUserTokensRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    RevokeTokenRequest,
    StreamPosition,
    SubscribeRequest,
    UnsubscribeRequest,
)
from cent import Disconnect as DisconnectSpec

from tests.support.api import api_raw
from tests.support.gateway import TEST_API_KEY, GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.tokens import token

NAMESPACES = [
    {"name": "critical", "history_size": 50, "history_ttl": "120s", "force_recovery": True},
    {"name": "chat", "presence": True, "join_leave": True, "allow_subscribe_for_client": True},
]


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    with running_gateway(base_config(namespaces=NAMESPACES)) as gateway:
        yield gateway


@pytest.fixture
def cent(gw: GatewayProcess) -> Iterator[Client]:
    client = Client(gw.api_url, TEST_API_KEY, timeout=5)
    yield client
    client.close()


async def test_publish_reaches_a_subscriber_and_returns_the_stream_position(gw: GatewayProcess, cent: Client) -> None:
    c = await RawClient.open(gw.ws_url)
    await c.connect(token())
    await c.subscribe("tenant_42")
    await c.subscribe("critical:tenant_42")
    status, raw = api_raw(gw.api_url, "publish", b'{"channel":"tenant_42","data":{"a":1}}')
    assert (status, raw) == (200, b'{"result":{}}')  # no history: no position
    result = cent.publish(PublishRequest(channel="critical:tenant_42", data={"b": 2}, tags={"t": "v"}))
    assert result.offset is not None and result.offset >= 1 and result.epoch
    assert await c.push() == {"channel": "tenant_42", "pub": {"data": {"a": 1}}}
    assert await c.push() == {
        "channel": "critical:tenant_42",
        "pub": {"data": {"b": 2}, "offset": result.offset, "tags": {"t": "v"}},
    }
    await c.close()


def test_wrong_key_is_401(gw: GatewayProcess) -> None:
    wrong = Client(gw.api_url, "wrong-key")
    with pytest.raises(CentUnauthorizedError):
        wrong.publish(PublishRequest(channel="tenant_42", data={}))
    wrong.close()
    assert api_raw(gw.api_url, "publish", b"{}", headers={})[0] == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": TEST_API_KEY},
        {"Authorization": f"apikey {TEST_API_KEY}"},
        {"Authorization": f"APIKEY {TEST_API_KEY}"},
    ],
)
def test_key_by_header(gw: GatewayProcess, headers: dict[str, str]) -> None:
    status, body = api_raw(gw.api_url, "info", b"{}", headers=headers)
    assert status == 200 and "nodes" in json.loads(body)["result"]


def test_key_by_query(gw: GatewayProcess) -> None:
    status, _ = api_raw(f"{gw.api_url}/info?api_key={TEST_API_KEY}", "", b"{}", headers={})
    assert status == 200


def test_unknown_namespace_is_102(cent: Client) -> None:
    with pytest.raises(CentApiResponseError) as exc:
        cent.publish(PublishRequest(channel="nope:x", data={}))
    assert exc.value.code == 102


def test_bad_json_is_400(gw: GatewayProcess) -> None:
    assert api_raw(gw.api_url, "publish", b"{not json") == (400, b"Bad Request")
    assert api_raw(gw.api_url, "publish", b'{"channel": 5}') == (400, b"Bad Request")


def test_http_conventions(gw: GatewayProcess) -> None:
    assert api_raw(gw.api_url, "publish", b"", http_method="GET")[0] == 405
    assert api_raw(gw.api_url, "no_such_method", b"{}")[0] == 404


def test_validation_errors_are_http_200_with_107(gw: GatewayProcess) -> None:
    for body in (b'{"channel":"","data":{}}', b'{"channel":"tenant_42"}', b'{"channel":"x","b64data":"%%%"}'):
        status, raw = api_raw(gw.api_url, "publish", body)
        assert status == 200 and json.loads(raw) == {"error": {"code": 107, "message": "bad request"}}


def test_transport_error_mode(gw: GatewayProcess) -> None:
    headers = {"X-API-Key": TEST_API_KEY, "X-Centrifugo-Error-Mode": "transport"}
    status, raw = api_raw(gw.api_url, "publish", b'{"channel":"nope:x","data":{}}', headers=headers)
    assert status == 404 and json.loads(raw) == {"code": 102, "message": "unknown channel"}


def test_broadcast(cent: Client) -> None:
    result = cent.broadcast(BroadcastRequest(channels=["tenant_1", "critical:tenant_1", "nope:x"], data={"x": 1}))
    assert result.responses[0].result is not None and result.responses[0].error is None
    assert result.responses[1].result is not None and result.responses[1].result.offset
    assert result.responses[2].error is not None and result.responses[2].error.code == 102
    with pytest.raises(CentApiResponseError) as exc:
        cent.broadcast(BroadcastRequest(channels=[], data={}))
    assert exc.value.code == 107


def test_history_and_history_remove(cent: Client) -> None:
    for n in range(5):
        cent.publish(PublishRequest(channel="critical:hist", data={"n": n}))
    page = cent.history(HistoryRequest(channel="critical:hist", limit=-1))
    assert [p.data["n"] for p in page.publications] == [0, 1, 2, 3, 4]
    assert page.offset == 5 and page.epoch
    only_top = cent.history(HistoryRequest(channel="critical:hist", limit=0))
    assert only_top.publications == [] and only_top.offset == 5
    since = cent.history(
        HistoryRequest(channel="critical:hist", limit=2, since=StreamPosition(offset=2, epoch=page.epoch))
    )
    assert [p.offset for p in since.publications] == [3, 4]
    back = cent.history(HistoryRequest(channel="critical:hist", limit=2, reverse=True))
    assert [p.offset for p in back.publications] == [5, 4]
    with pytest.raises(CentApiResponseError) as exc:
        cent.history(HistoryRequest(channel="critical:hist", since=StreamPosition(offset=1, epoch="zzzz")))
    assert exc.value.code == 112
    with pytest.raises(CentApiResponseError) as exc:
        cent.history(HistoryRequest(channel="tenant_1"))
    assert exc.value.code == 108
    cent.history_remove(HistoryRemoveRequest(channel="critical:hist"))
    after = cent.history(HistoryRequest(channel="critical:hist", limit=-1))
    assert after.publications == [] and after.offset == 5 and after.epoch == page.epoch


def test_idempotent_publish(cent: Client) -> None:
    first = cent.publish(PublishRequest(channel="critical:idem", data={"n": 1}, idempotency_key="k1"))
    again = cent.publish(PublishRequest(channel="critical:idem", data={"n": 1}, idempotency_key="k1"))
    other = cent.publish(PublishRequest(channel="critical:idem", data={"n": 1}, idempotency_key="k2"))
    assert again.offset == first.offset and other.offset == (first.offset or 0) + 1
    assert len(cent.history(HistoryRequest(channel="critical:idem", limit=-1)).publications) == 2


async def test_presence_and_stats(gw: GatewayProcess, cent: Client) -> None:
    a = await RawClient.open(gw.ws_url)
    await a.connect(token(user="5", info={"name": "A"}))
    await a.subscribe("chat:room")
    b = await RawClient.open(gw.ws_url)
    await b.connect(token(user="6"))
    await b.subscribe("chat:room")
    presence = cent.presence(PresenceRequest(channel="chat:room")).presence
    assert sorted(info.user for info in presence.values()) == ["5", "6"]
    assert any(info.conn_info == {"name": "A"} for info in presence.values())
    stats = cent.presence_stats(PresenceStatsRequest(channel="chat:room"))
    assert (stats.num_clients, stats.num_users) == (2, 2)
    with pytest.raises(CentApiResponseError) as exc:
        cent.presence(PresenceRequest(channel="tenant_1"))
    assert exc.value.code == 108
    await a.close()
    await b.close()


async def test_disconnect_unsubscribe_subscribe_refresh(gw: GatewayProcess, cent: Client) -> None:
    c = await RawClient.open(gw.ws_url)
    await c.connect(token(user="40"))
    await c.subscribe("tenant_42")
    cent.unsubscribe(UnsubscribeRequest(user="40", channel="tenant_42"))
    assert await c.push() == {"channel": "tenant_42", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}

    cent.subscribe(SubscribeRequest(user="40", channel="critical:live"))
    push = await c.push()
    assert push["channel"] == "critical:live" and push["subscribe"]["recoverable"] is True
    published = cent.publish(PublishRequest(channel="critical:live", data={"live": True}))
    assert await c.push() == {"channel": "critical:live", "pub": {"data": {"live": True}, "offset": published.offset}}

    cent.refresh(RefreshRequest(user="40", expire_at=4_000_000_000))
    assert (await c.push())["refresh"]["expires"] is True

    keep = await RawClient.open(gw.ws_url)
    keep_id = (await keep.connect(token(user="40")))["connect"]["client"]
    cent.disconnect(
        DisconnectRequest(user="40", whitelist=[keep_id], disconnect=DisconnectSpec(code=4501, reason="bye"))
    )
    assert await c.closed() == (4501, "bye")
    cent.disconnect(DisconnectRequest(user="40"))
    assert await keep.closed() == (3503, "force disconnect")

    again = await RawClient.open(gw.ws_url)
    await again.connect(token(user="41"))
    cent.refresh(RefreshRequest(user="41", expired=True))
    assert await again.closed() == (3005, "connection expired")


async def test_channels_and_info(gw: GatewayProcess, cent: Client) -> None:
    info = cent.info(InfoRequest())
    assert len(info.nodes) == 1 and info.nodes[0].version
    run = uuid.uuid4().hex[:8]
    a, b, other = f"chat:pat-{run}-a", f"chat:pat-{run}-b", f"chat:elsewhere-{run}"
    clients = []
    for channel in (a, a, b, other):
        c = await RawClient.open(gw.ws_url)
        await c.connect(token(user=f"u{len(clients)}", channels=[]))
        assert "subscribe" in await c.subscribe(channel)
        clients.append(c)
    found = cent.channels(ChannelsRequest(pattern=f"chat:pat-{run}-*")).channels
    assert {channel: item.num_clients for channel, item in found.items()} == {a: 2, b: 1}
    assert cent.channels(ChannelsRequest(pattern="nothing-*")).channels == {}
    everything = cent.channels(ChannelsRequest()).channels
    assert {a, b, other} <= set(everything) and everything[other].num_clients == 1
    for c in clients:
        await c.close()


async def test_revocation_methods(gw: GatewayProcess, cent: Client) -> None:
    run = uuid.uuid4().hex[:8]
    jti, user = f"revoked-{run}", f"revoking-{run}"
    revoked_token = token(user=user, extra={"jti": jti})
    holder = await RawClient.open(gw.ws_url)
    await holder.connect(revoked_token)
    bystander = await RawClient.open(gw.ws_url)  # the same user on another token
    await bystander.connect(token(user=user))
    cent.revoke_token(RevokeTokenRequest(uid=jti, expire_at=int(time.time()) + 600))
    assert await holder.closed() == (3005, "connection expired")
    again = await RawClient.open(gw.ws_url)
    assert await again.connect(revoked_token) == {"id": 1, "error": {"code": 109, "message": "token expired"}}
    await again.close()
    assert "subscribe" in await bystander.subscribe("tenant_42")  # other tokens are untouched
    await bystander.close()

    invalidated = f"invalidated-{run}"
    old = token(user=invalidated, now=time.time() - 60)
    live = await RawClient.open(gw.ws_url)
    await live.connect(old)
    other_user = await RawClient.open(gw.ws_url)
    await other_user.connect(token(user=f"not-{invalidated}", now=time.time() - 60))
    cent.invalidate_user_tokens(InvalidateUserTokensRequest(user=invalidated, issued_before=int(time.time()) - 1))
    assert await live.closed() == (3005, "connection expired")
    again = await RawClient.open(gw.ws_url)
    assert await again.connect(old) == {"id": 1, "error": {"code": 109, "message": "token expired"}}
    await again.close()
    fresh = await RawClient.open(gw.ws_url)
    assert "connect" in await fresh.connect(token(user=invalidated))  # issued after the invalidation
    assert "subscribe" in await other_user.subscribe("tenant_42")  # another user's tokens are untouched
    for c in (fresh, other_user):
        await c.close()

    with pytest.raises(CentApiResponseError) as exc:
        cent.revoke_token(RevokeTokenRequest(uid=""))
    assert exc.value.code == 107
    with pytest.raises(CentApiResponseError) as exc:
        cent.invalidate_user_tokens(InvalidateUserTokensRequest(user=""))
    assert exc.value.code == 107


def test_batch(cent: Client) -> None:
    result = cent.batch(
        BatchRequest(
            requests=[
                PublishRequest(channel="critical:batch", data={"n": 1}),
                PublishRequest(channel="critical:batch", data={"n": 2}),
                HistoryRequest(channel="critical:batch", limit=-1),
            ]
        )
    )
    assert [r.offset for r in result.replies[:2]] == [1, 2]  # type: ignore[union-attr]
    assert len(result.replies[2].publications) == 2  # type: ignore[union-attr]


def test_batch_reports_errors_per_command(gw: GatewayProcess) -> None:
    body = json.dumps({"commands": [{"publish": {"channel": "nope:x", "data": {}}}, {"info": {}}]}).encode()
    status, raw = api_raw(gw.api_url, "batch", body)
    replies = json.loads(raw)["replies"]
    assert status == 200 and replies[0] == {"error": {"code": 102, "message": "unknown channel"}}
    assert "nodes" in replies[1]["info"]


def test_legacy_api_endpoint(gw: GatewayProcess) -> None:
    body = (
        b'{"id":1,"method":"publish","params":{"channel":"tenant_9","data":{}}}\n{"id":2,"method":"INFO","params":{}}'
    )
    status, raw = api_raw(gw.api_url, "", body)
    lines = [json.loads(line) for line in raw.decode().split("\n")]
    assert status == 200 and lines[0] == {"id": 1, "result": {}} and lines[1]["id"] == 2
    assert api_raw(gw.api_url, "", b'{"id":1,"method":"nope","params":{}}')[0] == 400
    status, raw = api_raw(gw.api_url, "", b'{"id":1,"method":"block_user","params":{}}')
    assert json.loads(raw) == {"id": 1, "error": {"code": 104, "message": "not found"}}
    status, raw = api_raw(gw.api_url, "", b'{"id":3,"method":0,"params":{"channel":"nope:x","data":{}}}')
    assert json.loads(raw) == {"id": 3, "error": {"code": 102, "message": "unknown channel"}}


def test_no_api_key_configured_refuses_everything() -> None:
    cfg = base_config()
    del cfg["api_key"]
    with running_gateway(cfg) as gw:
        assert api_raw(gw.api_url, "info", b"{}")[0] == 401
        client = Client(gw.api_url, "")
        with pytest.raises((CentUnauthorizedError, CentTransportError)):
            client.info(InfoRequest())
        client.close()
