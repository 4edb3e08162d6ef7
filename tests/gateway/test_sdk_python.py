"""The official ``centrifuge-python`` SDK against a real gateway (issue: gateway core)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from cent import Client as CentClient
from cent import PublishRequest
from centrifuge import Client

from tests.support.gateway import TEST_API_KEY, GatewayProcess, base_config, running_gateway
from tests.support.pyclient import PROTOCOLS, Recorder, close_client
from tests.support.timing import duration, wait_until
from tests.support.tokens import GRANTS, REFUSED, token


def cent_publish(gw: GatewayProcess, channel: str, data: object) -> None:
    client = CentClient(gw.api_url, TEST_API_KEY)
    try:
        client.publish(PublishRequest(channel=channel, data=data))
    finally:
        client.close()


# Every scenario over JSON and over Protobuf (the SDK's ``use_protobuf``).
pytestmark = pytest.mark.parametrize("protocol", PROTOCOLS)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    yield Recorder()


async def test_grants_allow_exactly_the_listed_channels(
    gateway: GatewayProcess, recorder: Recorder, protocol: str
) -> None:
    client = Client(
        gateway.ws_url,
        token=token(channels=GRANTS),
        events=recorder.client_handler(),
        use_protobuf=protocol == "protobuf",
    )
    subs = {ch: client.new_subscription(ch, events=recorder.sub_handler(ch)) for ch in ["tenant_42", *REFUSED]}
    await client.connect()
    for sub in subs.values():
        await sub.subscribe()
    await recorder.wait_for("sub:subscribed", "tenant_42")
    for refused in REFUSED:
        event = await recorder.wait_for("sub:unsubscribed", refused)
        assert event.ctx.code == 103, event.ctx
    assert not recorder.of("disconnected") and len(recorder.of("connected")) == 1
    cent_publish(gateway, "tenant_42", {"order": 7})
    pub = await recorder.wait_for("sub:publication", "tenant_42")
    assert pub.ctx.pub.data == {"order": 7}
    for refused in REFUSED:
        cent_publish(gateway, refused, {"order": "not yours"})
    cent_publish(gateway, "tenant_42", {"order": 8})  # a fence: anything for a refused channel came before
    await recorder.wait_for("sub:publication", "tenant_42", where=lambda ctx: ctx.pub.data == {"order": 8})
    assert [e.channel for e in recorder.of("sub:publication")] == ["tenant_42", "tenant_42"]
    await close_client(client)


async def test_expired_token_makes_the_sdk_fetch_a_new_one(
    gateway: GatewayProcess, recorder: Recorder, protocol: str
) -> None:
    calls = 0

    async def get_token() -> str:
        nonlocal calls
        calls += 1
        return token()

    client = Client(
        gateway.ws_url,
        use_protobuf=protocol == "protobuf",
        token=token(ttl=-30),
        get_token=get_token,
        events=recorder.client_handler(),
        min_reconnect_delay=0.05,
    )
    await client.connect()
    await recorder.wait_for("connected", within=10)
    assert calls >= 1
    errors = [e.ctx for e in recorder.of("error")]
    assert errors, "the first attempt with the expired token should have failed"
    await close_client(client)


async def test_connection_refresh_keeps_the_socket_open(recorder: Recorder, protocol: str) -> None:
    # Tokens live 2 s; without a successful refresh the gateway closes the connection (3005) at
    # most 1 time unit after expiry, long before the third refresh would happen.
    cfg = base_config(client_expired_close_delay=duration(1))
    with running_gateway(cfg) as gw:
        refreshes = 0

        async def get_token() -> str:
            nonlocal refreshes
            refreshes += 1
            return token(ttl=2)

        client = Client(
            gw.ws_url,
            token=token(ttl=2),
            get_token=get_token,
            events=recorder.client_handler(),
            use_protobuf=protocol == "protobuf",
        )
        sub = client.new_subscription("tenant_42", events=recorder.sub_handler("tenant_42"))
        await client.connect()
        await sub.subscribe()
        await recorder.wait_for("sub:subscribed", "tenant_42")
        await wait_until(lambda: refreshes >= 3, "three refreshes", within=2.5 * 3 + 3)
        assert len(recorder.of("connected")) == 1 and not recorder.of("disconnected")
        assert len(recorder.of("connecting")) == 1  # only the initial one
        cent_publish(gw, "tenant_42", {"still": "open"})
        assert (await recorder.wait_for("sub:publication", "tenant_42")).ctx.pub.data == {"still": "open"}
        await close_client(client)


async def test_server_side_subscriptions_deliver_to_the_client_publication_handler(
    recorder: Recorder, protocol: str
) -> None:
    with running_gateway(base_config(token_channels="subscribe")) as gw:
        client = Client(
            gw.ws_url,
            token=token(channels=["tenant_42", "critical:tenant_42"]),
            events=recorder.client_handler(),
            use_protobuf=protocol == "protobuf",
        )
        await client.connect()
        subscribed = await recorder.wait_for("subscribed", "critical:tenant_42")
        assert subscribed.ctx.recoverable is True
        await recorder.wait_for("subscribed", "tenant_42")
        cent_publish(gw, "tenant_42", {"server": "side"})
        cent_publish(gw, "critical:tenant_42", {"n": 1})
        assert (await recorder.wait_for("publication", "tenant_42")).ctx.pub.data == {"server": "side"}
        critical = await recorder.wait_for("publication", "critical:tenant_42")
        assert critical.ctx.pub.data == {"n": 1} and critical.ctx.pub.offset == 1
        await close_client(client)
