"""Nothing published to a ``critical:`` channel is lost across a reconnect (issue 3), with ``centrifuge-python``.

The client connects through a TCP proxy the test controls (``tests/support/proxy.py``): its
connection is cut either by the gateway (server API ``disconnect`` with a reconnect code, a
close frame) or by aborting the TCP connection (no close frame), then held away while the test
publishes, then let back in. The app must see exactly what it missed, in order, once each, and
``recovered: false`` (with nothing presented as recovered) when history cannot fill the gap.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from centrifuge import Client, StreamPosition

from tests.support.api import api, publish
from tests.support.delivery import assert_exactly_once_in_order
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.proxy import TcpProxy
from tests.support.pyclient import PROTOCOLS, Recorder, close_client
from tests.support.tokens import GRANTS, token

CRITICAL = "critical:tenant_42"
BARE = "tenant_42"

# Every scenario over JSON and over Protobuf (the SDK's ``use_protobuf``).
pytestmark = pytest.mark.parametrize("protocol", PROTOCOLS)


@pytest.fixture
async def proxy(gateway: GatewayProcess) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(gateway.port) as p:
        yield p


def sdk_client(url: str, user: str, recorder: Recorder, protocol: str, **kw: Any) -> Client:
    """An SDK client that reconnects fast, so a test never waits on backoff."""
    return Client(
        url,
        use_protobuf=protocol == "protobuf",
        token=token(user=user, channels=kw.pop("channels", GRANTS)),
        events=recorder.client_handler(),
        min_reconnect_delay=0.05,
        max_reconnect_delay=0.3,
        **kw,
    )


async def publish_seqs(gw: GatewayProcess, channel: str, tag: str, seqs: range) -> list[int]:
    """Publish ``{"tag", "seq"}`` for each seq; returns the stream offsets the API reported."""
    offsets = []
    for seq in seqs:
        result = await asyncio.to_thread(publish, gw.api_url, channel, {"tag": tag, "seq": seq})
        offsets.append(result.get("offset", 0))
    return offsets


def seqs_seen(recorder: Recorder, channel: str, tag: str, kind: str = "sub:publication") -> list[int]:
    return [e.ctx.pub.data["seq"] for e in recorder.of(kind, channel) if e.ctx.pub.data.get("tag") == tag]


async def wait_seqs(recorder: Recorder, channel: str, tag: str, last: int, kind: str = "sub:publication") -> list[int]:
    """Wait until ``last`` was delivered; the sequence numbers seen so far, in delivery order."""

    def delivered() -> list[int] | None:
        seen = seqs_seen(recorder, channel, tag, kind)
        return seen if last in seen else None

    found = await recorder.wait(delivered, f"seq {last} on {channel}", within=10)
    assert found is not None
    return found


async def cut(how: str, gw: GatewayProcess, proxy: TcpProxy, user: str) -> None:
    """Take the client away and keep it away until ``proxy.release()``."""
    proxy.hold()
    if how == "server-close":
        # A close frame with a reconnect code (3000-3499), as the gateway sends for one client.
        reply = await asyncio.to_thread(
            api, gw.api_url, "disconnect", {"user": user, "disconnect": {"code": 3011, "reason": "force reconnect"}}
        )
        assert reply == {"result": {}}
    else:
        assert proxy.cut_all() == 1  # the TCP connection dies without a close frame


@pytest.mark.parametrize("how", ["server-close", "tcp-abort"])
async def test_ten_missed_publications_are_recovered_in_order_once(
    gateway: GatewayProcess, proxy: TcpProxy, how: str, protocol: str
) -> None:
    recorder, user, tag = Recorder(), f"py-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    client = sdk_client(proxy.ws_url, user, recorder, protocol)
    critical = client.new_subscription(CRITICAL, events=recorder.sub_handler(CRITICAL))
    bare = client.new_subscription(BARE, events=recorder.sub_handler(BARE))
    try:
        await client.connect()
        await critical.subscribe()
        await bare.subscribe()
        fresh = await recorder.wait_for("sub:subscribed", CRITICAL)
        assert fresh.ctx.recoverable and not fresh.ctx.was_recovering
        await recorder.wait_for("sub:subscribed", BARE)
        await publish_seqs(gateway, CRITICAL, tag, range(0, 1))
        await wait_seqs(recorder, CRITICAL, tag, 0)

        await cut(how, gateway, proxy, user)
        await recorder.wait_for("connecting", where=lambda ctx: ctx.code != 0)  # the SDK noticed
        away = await publish_seqs(gateway, CRITICAL, tag, range(1, 11))
        assert away == list(range(away[0], away[0] + 10))  # ten consecutive stream offsets
        await publish_seqs(gateway, BARE, tag, range(1, 4))
        mark = recorder.mark()
        proxy.release()

        again = await recorder.wait_for("sub:subscribed", CRITICAL, where=lambda ctx: ctx.was_recovering)
        assert again.ctx.recovered is True
        await publish_seqs(gateway, CRITICAL, tag, range(11, 12))  # live again after recovery
        seen = await wait_seqs(recorder, CRITICAL, tag, 11)
        assert_exactly_once_in_order(seen, list(range(12)))

        # The bare channel keeps no history: its subscription is not recoverable, and what was
        # published to it while the client was away is gone for good.
        # The bare subscription's own resubscription, not the first one still (it may come later).
        bare_again = (await recorder.wait_for("sub:subscribed", BARE, since=mark)).ctx
        assert not bare_again.recoverable and not bare_again.was_recovering and not bare_again.recovered
        await publish_seqs(gateway, BARE, tag, range(4, 5))
        assert await wait_seqs(recorder, BARE, tag, 4) == [4]
        assert len(recorder.of("connected")) == 2
    finally:
        await close_client(client)


async def test_more_missed_than_history_holds_is_not_recovered(
    gateway: GatewayProcess, proxy: TcpProxy, protocol: str
) -> None:
    recorder, user, tag = Recorder(), f"py-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    client = sdk_client(proxy.ws_url, user, recorder, protocol)
    critical = client.new_subscription(CRITICAL, events=recorder.sub_handler(CRITICAL))
    try:
        await client.connect()
        await critical.subscribe()
        await recorder.wait_for("sub:subscribed", CRITICAL)
        await publish_seqs(gateway, CRITICAL, tag, range(0, 1))
        await wait_seqs(recorder, CRITICAL, tag, 0)

        await cut("tcp-abort", gateway, proxy, user)
        await recorder.wait_for("connecting", where=lambda ctx: ctx.code != 0)
        await publish_seqs(gateway, CRITICAL, tag, range(1, 61))  # history_size is 50
        proxy.release()

        again = await recorder.wait_for("sub:subscribed", CRITICAL, where=lambda ctx: ctx.was_recovering)
        assert again.ctx.recovered is False  # the app must reload its state
        await publish_seqs(gateway, CRITICAL, tag, range(61, 62))
        seen = await wait_seqs(recorder, CRITICAL, tag, 61)
        assert seen == [0, 61], "no partial set of the missed publications may be presented"
        top = again.ctx.stream_position
        assert recorder.of("sub:publication", CRITICAL)[-1].ctx.pub.offset == top.offset + 1
    finally:
        await close_client(client)


async def test_a_restarted_gateway_has_a_new_epoch_and_says_not_recovered(protocol: str) -> None:
    recorder, tag = Recorder(), uuid.uuid4().hex
    with running_gateway(base_config()) as gw:
        client = sdk_client(gw.ws_url, "5", recorder, protocol)
        critical = client.new_subscription(CRITICAL, events=recorder.sub_handler(CRITICAL))
        try:
            await client.connect()
            await critical.subscribe()
            before = (await recorder.wait_for("sub:subscribed", CRITICAL)).ctx.stream_position
            await publish_seqs(gw, CRITICAL, tag, range(0, 3))
            await wait_seqs(recorder, CRITICAL, tag, 2)

            await asyncio.to_thread(gw.restart)  # the memory broker's streams are gone

            again = await recorder.wait_for("sub:subscribed", CRITICAL, where=lambda ctx: ctx.was_recovering, within=15)
            assert again.ctx.recovered is False
            assert again.ctx.stream_position.epoch != before.epoch
            assert again.ctx.stream_position.offset == 0
            offsets = await publish_seqs(gw, CRITICAL, tag, range(3, 4))
            assert offsets == [1]  # a new stream starts at 1
            seen = await wait_seqs(recorder, CRITICAL, tag, 3)
            assert seen == [0, 1, 2, 3]
            assert recorder.of("sub:publication", CRITICAL)[-1].ctx.pub.offset == 1
        finally:
            await close_client(client)


async def test_server_side_subscriptions_recover_through_connect_subs(protocol: str) -> None:
    """``token_channels: "subscribe"``: the SDK sends its positions in ``connect.subs``."""
    recorder, tag = Recorder(), uuid.uuid4().hex
    with running_gateway(base_config(token_channels="subscribe")) as gw:
        async with TcpProxy(gw.port) as proxy:
            client = sdk_client(proxy.ws_url, "5", recorder, protocol, channels=[CRITICAL])
            try:
                await client.connect()
                fresh = await recorder.wait_for("subscribed", CRITICAL)
                assert fresh.ctx.recoverable and not fresh.ctx.was_recovering
                await publish_seqs(gw, CRITICAL, tag, range(0, 1))
                await wait_seqs(recorder, CRITICAL, tag, 0, kind="publication")

                await cut("tcp-abort", gw, proxy, "5")
                await recorder.wait_for("connecting", where=lambda ctx: ctx.code != 0)
                await publish_seqs(gw, CRITICAL, tag, range(1, 11))
                proxy.release()

                again = await recorder.wait_for("subscribed", CRITICAL, where=lambda ctx: ctx.was_recovering)
                assert again.ctx.recovered is True
                await publish_seqs(gw, CRITICAL, tag, range(11, 12))
                seen = await wait_seqs(recorder, CRITICAL, tag, 11, kind="publication")
                assert_exactly_once_in_order(seen, list(range(12)))
            finally:
                await close_client(client)


async def test_state_loaded_at_a_published_position_misses_nothing(gateway: GatewayProcess, protocol: str) -> None:
    """Issue 3 §6: the app loads its state at the position ``publish`` returned (the SDK's
    ``get_state``), and the subscription continues from exactly there."""
    recorder, tag = Recorder(), uuid.uuid4().hex
    loaded = await asyncio.to_thread(publish, gateway.api_url, CRITICAL, {"tag": tag, "seq": 0})
    await publish_seqs(gateway, CRITICAL, tag, range(1, 4))  # published before the app subscribes
    calls: list[str] = []

    async def get_state(channel: str) -> StreamPosition:
        calls.append(channel)
        return StreamPosition(offset=loaded["offset"], epoch=loaded["epoch"])

    client = sdk_client(gateway.ws_url, "5", recorder, protocol)
    sub = client.new_subscription(CRITICAL, events=recorder.sub_handler(CRITICAL), get_state=get_state)
    try:
        await client.connect()
        await sub.subscribe()
        ctx = (await recorder.wait_for("sub:subscribed", CRITICAL)).ctx
        assert ctx.was_recovering and ctx.recovered and calls == [CRITICAL]
        await publish_seqs(gateway, CRITICAL, tag, range(4, 5))
        assert_exactly_once_in_order(await wait_seqs(recorder, CRITICAL, tag, 4), [1, 2, 3, 4])
    finally:
        await close_client(client)


async def test_an_unrecoverable_get_state_position_makes_the_sdk_reload_its_state(
    gateway: GatewayProcess, protocol: str
) -> None:
    """With ``get_state`` the SDK sends subscribe flag 2: the gateway answers error 112 instead of
    ``recovered: false``, and the SDK asks the app for its state again (spec §2.2, §5.1)."""
    recorder, tag = Recorder(), uuid.uuid4().hex
    current = await asyncio.to_thread(publish, gateway.api_url, CRITICAL, {"tag": tag, "seq": 0})
    positions = [
        StreamPosition(offset=1, epoch="gone"),  # a position from a stream that no longer exists
        StreamPosition(offset=current["offset"], epoch=current["epoch"]),
    ]
    calls: list[str] = []

    async def get_state(channel: str) -> StreamPosition:
        calls.append(channel)
        return positions[min(len(calls), len(positions)) - 1]

    client = sdk_client(gateway.ws_url, "5", recorder, protocol)
    sub = client.new_subscription(
        CRITICAL,
        events=recorder.sub_handler(CRITICAL),
        get_state=get_state,
        min_resubscribe_delay=0.05,
        max_resubscribe_delay=0.2,
    )
    try:
        await client.connect()
        await sub.subscribe()
        ctx = (await recorder.wait_for("sub:subscribed", CRITICAL, within=10)).ctx
        assert calls == [CRITICAL, CRITICAL], calls
        assert ctx.recovered is True
        assert not recorder.of("sub:unsubscribed", CRITICAL)
        await publish_seqs(gateway, CRITICAL, tag, range(1, 2))
        assert_exactly_once_in_order(await wait_seqs(recorder, CRITICAL, tag, 1), [1])
    finally:
        await close_client(client)
