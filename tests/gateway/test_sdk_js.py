"""Interop with the official npm ``centrifuge`` SDK (centrifuge-js 5.x) against a real gateway.

The SDK runs in ``tests/js/driver.mjs`` (see ``tests/support/jsclient.py``); publications are
sent with the official ``cent`` server API client. Needs ``npm ci --prefix tests/js``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from cent import Client, PublishRequest

from tests.support.gateway import TEST_API_KEY, GatewayProcess, base_config, running_gateway
from tests.support.jsclient import Event, JsDriver, on
from tests.support.timing import duration, seconds
from tests.support.tokens import GRANTS, REFUSED, token


@pytest.fixture(scope="module")
def grant_gateway() -> Iterator[GatewayProcess]:
    """One gateway in the default grant mode (decisions §1) for the tests that need nothing else."""
    with running_gateway(base_config()) as gw:
        yield gw


@pytest.fixture
async def js(grant_gateway: GatewayProcess) -> AsyncIterator[JsDriver]:
    async with JsDriver() as driver:
        driver.add_diagnostics("gateway log", grant_gateway.log)
        yield driver


async def publish(gw: GatewayProcess, channel: str, data: Any) -> None:
    api = Client(gw.api_url, TEST_API_KEY, timeout=seconds(5))
    try:
        await asyncio.to_thread(api.publish, PublishRequest(channel=channel, data=data))
    finally:
        api.close()


async def connected_client(js: JsDriver, gw: GatewayProcess, cid: str, **spec: Any) -> Event:
    """Create client ``cid`` (``spec`` = further fields of the ``client`` command), connect, wait for it."""
    await js.call({"op": "client", "id": cid, "url": gw.ws_url, "connect": True, **spec})
    return await js.wait_for(on(cid, "connected", channel=None))


def marker() -> str:
    return uuid.uuid4().hex


async def test_granted_channel_receives_publication_from_cent(grant_gateway: GatewayProcess, js: JsDriver) -> None:
    await connected_client(js, grant_gateway, "c1", token=token())
    await js.call({"op": "subscribe", "client": "c1", "channel": "tenant_42"})
    subscribed = await js.wait_for(on("c1", "subscribed", source="sub", channel="tenant_42"))
    assert subscribed["ctx"]["channel"] == "tenant_42"

    payload = {"event": "order.created", "id": marker()}
    await publish(grant_gateway, "tenant_42", payload)
    pub = await js.wait_for(on("c1", "publication", source="sub", channel="tenant_42"))
    assert pub["ctx"]["data"] == payload
    assert "offset" not in pub["ctx"]  # no history in the top-level namespace


@pytest.mark.parametrize("channel", REFUSED)
async def test_channel_outside_grant_list_is_refused_with_103(
    grant_gateway: GatewayProcess, js: JsDriver, channel: str
) -> None:
    await connected_client(js, grant_gateway, "c1", token=token())
    await js.call({"op": "subscribe", "client": "c1", "channel": "tenant_42"})
    await js.wait_for(on("c1", "subscribed", source="sub", channel="tenant_42"))

    await js.call({"op": "subscribe", "client": "c1", "channel": channel})
    ended = await js.wait_for(on("c1", "unsubscribed", source="sub", channel=channel))
    assert (ended["ctx"]["code"], ended["ctx"]["reason"]) == (103, "permission denied")
    assert js.select(on("c1", "subscribed", channel=channel)) == []
    state = await js.call({"op": "state", "client": "c1"})
    assert state["subs"][channel] == "unsubscribed"

    # The connection stays usable: nothing delivered for the refused channel, the granted one works.
    refused = {"n": marker()}
    granted = {"n": marker()}
    await publish(grant_gateway, channel, refused)
    await publish(grant_gateway, "tenant_42", granted)
    pub = await js.wait_for(on("c1", "publication", channel="tenant_42"))
    assert pub["ctx"]["data"] == granted
    assert js.select(on("c1", "publication", channel=channel)) == []
    assert js.select(on("c1", "disconnected")) == []
    assert len(js.select(on("c1", "connecting"))) == 1  # only the initial connect
    assert (await js.call({"op": "state", "client": "c1"}))["state"] == "connected"


async def test_expired_token_makes_sdk_fetch_a_new_one_and_connect(grant_gateway: GatewayProcess, js: JsDriver) -> None:
    expired = token(ttl=60, now=time.time() - 120)
    fresh = token()
    await js.call(
        {
            "op": "client",
            "id": "c1",
            "url": grant_gateway.ws_url,
            "token": expired,
            "tokens": [fresh],
            "trace": True,
            "connect": True,
        }
    )
    connected = await js.wait_for(on("c1", "connected", channel=None), timeout=seconds(8))

    # The gateway answered the expired token with 109, and only then was getToken called.
    rejected = await js.wait_for(on("c1", "error", channel=None, type="connect"))
    assert rejected["ctx"]["error"]["code"] == 109
    fetched = await js.wait_for(on("c1", "getToken"))
    assert rejected["seq"] < fetched["seq"] < connected["seq"]
    assert len(js.select(on("c1", "getToken"))) == 1
    assert js.select(on("c1", "disconnected")) == []

    connects = [f for f in js.frames if f["dir"] == "out" and '"connect":' in f["data"]]
    assert len(connects) == 2
    assert expired in connects[0]["data"] and fresh in connects[1]["data"]

    # The new connection works with the new token's grants.
    await js.call({"op": "subscribe", "client": "c1", "channel": "tenant_42"})
    await js.wait_for(on("c1", "subscribed", channel="tenant_42"))
    payload = {"n": marker()}
    await publish(grant_gateway, "tenant_42", payload)
    assert (await js.wait_for(on("c1", "publication", channel="tenant_42")))["ctx"]["data"] == payload


async def test_connection_token_refresh_keeps_the_socket_open() -> None:
    # Tokens live 2 s; without a successful refresh the gateway closes the connection (3005) at
    # most 2 time units after expiry, i.e. before the third refresh would happen.
    refreshes = 3
    with running_gateway(base_config(client_expired_close_delay=duration(2))) as gw:
        async with JsDriver() as js:
            js.add_diagnostics("gateway log", gw.log)
            js.serve_tokens("c1", lambda ev: token(ttl=2))
            await connected_client(js, gw, "c1", token=token(ttl=2), tokens=[], trace=True)
            await js.call({"op": "subscribe", "client": "c1", "channel": "tenant_42"})
            await js.wait_for(on("c1", "subscribed", channel="tenant_42"))

            calls = await js.wait_for_count(on("c1", "getToken"), refreshes, timeout=seconds(2.5 * refreshes + 3))
            assert [c["ctx"]["call"] for c in calls] == list(range(1, refreshes + 1))
            payload = {"n": marker()}
            await publish(gw, "tenant_42", payload)
            pub = await js.wait_for(on("c1", "publication", channel="tenant_42"))
            assert pub["ctx"]["data"] == payload

            # One socket all along: no reconnect (a refused or ignored refresh ends in 3005 and a
            # reconnect, or a terminal disconnect).
            assert js.select(on("c1", "disconnected")) == [], js.log()
            assert len(js.select(on("c1", "connecting"))) == 1, js.log()  # only the initial connect
            assert len(js.select(on("c1", "connected"))) == 1, js.log()
            # Each refresh before the last was answered with a new ttl (that is what scheduled the
            # next getToken call).
            replies = [f for f in js.frames if f["dir"] == "in" and '"refresh":{' in f["data"]]
            assert len(replies) >= refreshes - 1, js.log()
            assert all('"expires":true' in f["data"] for f in replies), js.log()
            assert (await js.call({"op": "state", "client": "c1"}))["sockets"] == 1


async def test_server_side_subscriptions_in_subscribe_mode() -> None:
    with running_gateway(base_config(token_channels="subscribe")) as gw:
        async with JsDriver() as js:
            js.add_diagnostics("gateway log", gw.log)
            await connected_client(js, gw, "c1", token=token())
            subscribed = await js.wait_for_count(on("c1", "subscribed", source="client"), len(GRANTS))
            assert sorted(ev["channel"] for ev in subscribed) == sorted(GRANTS)
            critical = next(ev["ctx"] for ev in subscribed if ev["channel"] == "critical:tenant_42")
            assert critical["recoverable"] is True and critical["streamPosition"]["epoch"]

            plain = {"n": marker()}
            recovered = {"n": marker()}
            await publish(gw, "tenant_42", plain)
            await publish(gw, "critical:tenant_42", recovered)
            pub = await js.wait_for(on("c1", "publication", source="client", channel="tenant_42"))
            assert pub["ctx"]["data"] == plain
            pub = await js.wait_for(on("c1", "publication", source="client", channel="critical:tenant_42"))
            assert pub["ctx"]["data"] == recovered
            assert pub["ctx"]["offset"] == critical["streamPosition"]["offset"] + 1
            # Nothing went through client-side subscription objects.
            assert js.select(on(source="sub")) == []


async def test_subscribed_context_of_critical_channel(grant_gateway: GatewayProcess, js: JsDriver) -> None:
    await connected_client(js, grant_gateway, "c1", token=token())
    await js.call({"op": "subscribe", "client": "c1", "channel": "critical:tenant_42"})
    ev = await js.wait_for(on("c1", "subscribed", source="sub", channel="critical:tenant_42"))
    ctx = ev["ctx"]
    assert ctx["recoverable"] is True
    assert ctx["positioned"] is True
    assert ctx["wasRecovering"] is False and ctx["recovered"] is False
    epoch = ctx["streamPosition"]["epoch"]
    assert isinstance(epoch, str) and epoch != ""
    assert isinstance(ctx["streamPosition"]["offset"], int)
