"""Recovery and positioning edge cases, frame by frame (spec §6.2, §6.3).

Over real sockets: stream and cache recovery, the 300-publication recovery cap, opt-in and
forced positioning, insufficient state (2500 / 3010) from the periodic position check, and
``connect.subs`` recovery of server-side subscriptions. In process (a fake transport and a
broker that pauses inside stream reads): publications that arrive while a subscribe is being
answered are delivered after the reply, in order, once, and a hole among them is detected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from msgspec import Raw

from herald.errors import ReplyError
from herald.gateway.codecs.messages import Publication
from herald.gateway.session.subscribing import SubscribeIntent, open_subscription, release_buffer
from tests.support.api import api, publish
from tests.support.gateway import GatewayProcess, base_config, fresh_channel, running_gateway
from tests.support.inproc import GatedBroker, connected, in_process_node, send, settle
from tests.support.raw import RawClient
from tests.support.timing import seconds, wait_until
from tests.support.tokens import token

HISTORY = {"history_size": 10, "history_ttl": "120s", "allow_subscribe_for_client": True}
NAMESPACES = [
    {"name": "critical", "history_size": 50, "history_ttl": "120s", "force_recovery": True},
    {"name": "cache", **HISTORY, "force_recovery": True, "force_recovery_mode": "cache"},
    {"name": "positioned", **HISTORY, "force_positioning": True},
    {"name": "optin", **HISTORY, "allow_positioning": True, "allow_recovery": True},
    {"name": "kept", **HISTORY},
    {"name": "big", **HISTORY, "history_size": 1000, "force_recovery": True},
]


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    with running_gateway(base_config(namespaces=NAMESPACES)) as gateway:
        yield gateway


async def raw_client(gw: GatewayProcess, channels: list[str] | None = None) -> RawClient:
    c = await RawClient.open(gw.ws_url)
    await c.connect(token(channels=channels))
    return c


async def subscribe_once(gw: GatewayProcess, channel: str, **params: Any) -> dict[str, Any]:
    """Connect, subscribe with ``params``, disconnect; the subscribe result."""
    c = await raw_client(gw, [channel])
    try:
        reply = await c.subscribe(channel, **params)
        assert "subscribe" in reply, reply
        result: dict[str, Any] = reply["subscribe"]
        return result
    finally:
        await c.close()


def epoch_of(reply: dict[str, Any]) -> str:
    """The reply's stream epoch, which must be a non-empty string (spec §6.1)."""
    epoch = reply.get("epoch")
    assert isinstance(epoch, str) and epoch, f"no epoch in {reply}"
    return epoch


def publish_many(gw: GatewayProcess, channel: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    commands = [{"publish": {"channel": channel, "data": {"n": n}}} for n in range(start, start + count)]
    replies = api(gw.api_url, "batch", {"commands": commands})["replies"]
    return [r["publish"] for r in replies]


# --- stream recovery


async def test_recovered_reply_carries_the_missed_publications_and_the_clients_offset(gw: GatewayProcess) -> None:
    ch = fresh_channel("critical")
    publish_many(gw, ch, 2)
    first = await subscribe_once(gw, ch)
    epoch = epoch_of(first)
    assert first == {"recoverable": True, "epoch": epoch, "offset": 2, "positioned": True}
    missed = publish_many(gw, ch, 3, start=2)

    c = await raw_client(gw, [ch])
    reply = (await c.subscribe(ch, recover=True, offset=2, epoch=epoch))["subscribe"]
    assert reply == {
        "recoverable": True,
        "epoch": epoch,
        "publications": [{"data": {"n": n}, "offset": n + 1} for n in (2, 3, 4)],
        "recovered": True,
        "offset": 2,  # the client's own position: it advances with each publication (spec §6.3)
        "positioned": True,
        "was_recovering": True,
    }
    assert [m["offset"] for m in missed] == [3, 4, 5]
    publish(gw.api_url, ch, {"n": 5})
    assert await c.push() == {"channel": ch, "pub": {"data": {"n": 5}, "offset": 6}}
    await c.close()


async def test_nothing_missed_is_recovered_with_no_publications(gw: GatewayProcess) -> None:
    ch = fresh_channel("critical")
    publish_many(gw, ch, 3)
    epoch = epoch_of(await subscribe_once(gw, ch))
    reply = await subscribe_once(gw, ch, recover=True, offset=3, epoch=epoch)
    assert reply["recovered"] is True and reply["offset"] == 3 and "publications" not in reply


@pytest.mark.parametrize(
    ("offset", "which_epoch"),
    [(1, "stale"), (2, "stale"), (9, "current")],
    ids=["stale-epoch", "stale-epoch-at-top", "offset-beyond-top"],
)
async def test_unrecoverable_positions_get_the_top_and_nothing_else(
    gw: GatewayProcess, offset: int, which_epoch: str
) -> None:
    ch = fresh_channel("critical")
    publish_many(gw, ch, 2)
    epoch = epoch_of(await subscribe_once(gw, ch))
    reply = await subscribe_once(gw, ch, recover=True, offset=offset, epoch="Xyzw" if which_epoch == "stale" else epoch)
    assert reply == {
        "recoverable": True,
        "epoch": epoch,
        "offset": 2,
        "positioned": True,
        "was_recovering": True,
    }  # recovered omitted = false, and no publications


async def test_recovery_from_the_start_without_an_epoch(gw: GatewayProcess) -> None:
    ch = fresh_channel("critical")
    publish_many(gw, ch, 3)
    reply = await subscribe_once(gw, ch, recover=True)
    assert reply["recovered"] is True and [p["offset"] for p in reply["publications"]] == [1, 2, 3]


async def test_more_than_300_missed_is_not_recovered_even_when_history_holds_them(gw: GatewayProcess) -> None:
    ch = fresh_channel("big")
    epoch = epoch_of(await subscribe_once(gw, ch))
    publish_many(gw, ch, 301)
    reply = await subscribe_once(gw, ch, recover=True, offset=0, epoch=epoch)
    assert "recovered" not in reply and "publications" not in reply and reply["offset"] == 301
    # Exactly 300 behind fits the cap.
    reply = await subscribe_once(gw, ch, recover=True, offset=1, epoch=epoch)
    assert reply["recovered"] is True and len(reply["publications"]) == 300
    assert reply["publications"][0]["offset"] == 2 and reply["publications"][-1]["offset"] == 301


async def test_recover_on_a_channel_without_recovery_is_only_echoed(gw: GatewayProcess) -> None:
    assert await subscribe_once(gw, "tenant_42", recover=True, offset=3, epoch="abcd") == {"was_recovering": True}


async def test_skip_history_publications_reach_positioned_subscribers_without_breaking_their_position(
    gw: GatewayProcess,
) -> None:
    ch = fresh_channel("critical")
    publish_many(gw, ch, 1)
    c = await raw_client(gw, [ch])
    await c.subscribe(ch)
    assert publish(gw.api_url, ch, {"n": "ephemeral"}, skip_history=True) == {}
    publish(gw.api_url, ch, {"n": 2})
    assert await c.push() == {"channel": ch, "pub": {"data": {"n": "ephemeral"}}}
    assert await c.push() == {"channel": ch, "pub": {"data": {"n": 2}, "offset": 2}}
    history = api(gw.api_url, "history", {"channel": ch, "limit": -1})["result"]
    assert [p["data"] for p in history["publications"]] == [{"n": 0}, {"n": 2}]
    assert not [p for p in c.pushes if "unsubscribe" in p]
    await c.close()


# --- cache recovery


async def test_cache_mode_recovers_only_the_latest_publication(gw: GatewayProcess) -> None:
    ch = fresh_channel("cache")
    epoch = epoch_of(await subscribe_once(gw, ch))
    publish_many(gw, ch, 3)
    reply = await subscribe_once(gw, ch, recover=True, offset=0, epoch=epoch)
    assert reply["recovered"] is True and reply["publications"] == [{"data": {"n": 2}, "offset": 3}]
    # The client already has the top: nothing to send.
    reply = await subscribe_once(gw, ch, recover=True, offset=3, epoch=epoch)
    assert reply["recovered"] is True and "publications" not in reply and reply["offset"] == 3
    # Another epoch does not matter: the latest publication is the whole state.
    reply = await subscribe_once(gw, ch, recover=True, offset=1, epoch="Xyzw")
    assert reply["recovered"] is True and reply["publications"] == [{"data": {"n": 2}, "offset": 3}]


async def test_cache_mode_with_nothing_retained_is_not_recovered(gw: GatewayProcess) -> None:
    ch = fresh_channel("cache")
    epoch = epoch_of(await subscribe_once(gw, ch))
    publish_many(gw, ch, 2)
    assert api(gw.api_url, "history_remove", {"channel": ch}) == {"result": {}}
    reply = await subscribe_once(gw, ch, recover=True, offset=1, epoch=epoch)
    assert "recovered" not in reply and "publications" not in reply and reply["offset"] == 2


# --- positioning


async def test_forced_positioning_without_recovery(gw: GatewayProcess) -> None:
    ch = fresh_channel("positioned")
    publish_many(gw, ch, 2)
    first = await subscribe_once(gw, ch)
    epoch = epoch_of(first)
    assert first == {"epoch": epoch, "offset": 2, "positioned": True}
    # Asking to recover where recovery is off: only echoed, the position is still given.
    reply = await subscribe_once(gw, ch, recover=True, offset=1, epoch=epoch)
    assert reply == {"epoch": epoch, "offset": 2, "positioned": True, "was_recovering": True}


async def test_positioning_and_recovery_on_request_where_allowed(gw: GatewayProcess) -> None:
    ch = fresh_channel("optin")
    publish_many(gw, ch, 2)
    assert await subscribe_once(gw, ch) == {}
    positioned = await subscribe_once(gw, ch, positioned=True)
    epoch = epoch_of(positioned)
    assert positioned == {"epoch": epoch, "offset": 2, "positioned": True}
    recoverable = await subscribe_once(gw, ch, recoverable=True)
    assert recoverable == {"recoverable": True, "epoch": epoch, "offset": 2, "positioned": True}
    publish_many(gw, ch, 1, start=2)
    reply = await subscribe_once(gw, ch, recoverable=True, recover=True, offset=2, epoch=epoch)
    assert reply["recovered"] is True and reply["publications"] == [{"data": {"n": 2}, "offset": 3}]


async def test_positioning_and_recovery_are_not_granted_without_permission(gw: GatewayProcess) -> None:
    # "kept" keeps history but allows neither on request, nor history reads (the other way to
    # earn them, spec §4.6): asking for either changes nothing.
    ch = fresh_channel("kept")
    publish_many(gw, ch, 2)
    assert await subscribe_once(gw, ch, positioned=True) == {}
    assert await subscribe_once(gw, ch, recoverable=True) == {}
    assert await subscribe_once(gw, ch, positioned=True, recoverable=True) == {}
    reply = await subscribe_once(gw, ch, recoverable=True, recover=True, offset=1, epoch="Xyzw")
    assert reply == {"was_recovering": True}  # only echoed: nothing recovered, no position
    # "positioned" forces positioning but gives no recovery on request.
    ch = fresh_channel("positioned")
    publish_many(gw, ch, 2)
    reply = await subscribe_once(gw, ch, recoverable=True)
    assert reply == {"epoch": epoch_of(reply), "offset": 2, "positioned": True}


# --- insufficient state from the periodic position check (spec §6.2)

SHORT_META = {
    "name": "short",
    "history_size": 10,
    "history_ttl": "1s",
    "history_meta_ttl": "1s",
    "force_positioning": True,
    "allow_subscribe_for_client": True,
}


async def test_position_check_finds_a_lost_stream() -> None:
    """The stream meta expires between checks (a new epoch): 2500 for client-side, 3010 for server-side."""
    cfg = base_config(namespaces=[SHORT_META], token_channels="subscribe", client_channel_position_check_delay="1500ms")
    with running_gateway(cfg) as gw:
        client_side = await RawClient.open(gw.ws_url)
        await client_side.connect(token(channels=[]))
        await client_side.subscribe("short:a")
        server_side = await RawClient.open(gw.ws_url)
        reply = await server_side.connect(token(channels=["short:b"]))
        assert reply["connect"]["subs"]["short:b"]["positioned"] is True

        push = await client_side.push(lambda p: "unsubscribe" in p, timeout=seconds(5))
        assert push == {"channel": "short:a", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}
        assert await server_side.closed() == (3010, "insufficient state")
        # The client subscribes again and gets the new stream's position.
        again = (await client_side.subscribe("short:a"))["subscribe"]
        assert again["positioned"] is True
        await client_side.close()


async def test_position_check_leaves_an_intact_stream_alone() -> None:
    cfg = base_config(client_channel_position_check_delay="300ms")
    with running_gateway(cfg) as gw:
        c = await raw_client(gw)
        await c.subscribe("critical:tenant_42")
        for n in range(5):
            publish(gw.api_url, "critical:tenant_42", {"n": n})
            # Publications spread over several checks. A longer pause (a loaded machine) only
            # lets more checks run: each is a chance for a false alarm, none is needed to pass.
            await asyncio.sleep(seconds(0.2))
        pushes = [await c.push() for _ in range(5)]
        assert [p["pub"]["data"]["n"] for p in pushes] == [0, 1, 2, 3, 4]
        await asyncio.sleep(seconds(0.5))  # a few more checks after the last publication
        publish(gw.api_url, "critical:tenant_42", {"n": 5})
        assert (await c.push())["pub"]["data"] == {"n": 5}
        assert not [p for p in c.pushes if "unsubscribe" in p]
        await c.close()


# --- server-side subscriptions: connect.subs


@pytest.fixture(scope="module")
def subscribe_mode() -> Iterator[GatewayProcess]:
    with running_gateway(base_config(token_channels="subscribe")) as gateway:
        yield gateway


async def connect_subs(gw: GatewayProcess, subs: dict[str, Any] | None = None) -> dict[str, Any]:
    c = await RawClient.open(gw.ws_url)
    try:
        params: dict[str, Any] = {"subs": subs} if subs else {}
        reply = await c.connect(token(channels=["critical:tenant_42", "tenant_42"]), **params)
        result: dict[str, Any] = reply["connect"]["subs"]
        return result
    finally:
        await c.close()


async def test_connect_subs_recover_server_side_subscriptions(subscribe_mode: GatewayProcess) -> None:
    gw = subscribe_mode
    publish(gw.api_url, "critical:tenant_42", {"n": -1})  # so the client's position is not 0 (omitted)
    first = await connect_subs(gw)
    critical = first["critical:tenant_42"]
    epoch = epoch_of(critical)
    assert critical["recoverable"] is True and critical["positioned"] is True and first["tenant_42"] == {}
    top = critical["offset"]
    publish_many(gw, "critical:tenant_42", 3)
    publish(gw.api_url, "tenant_42", {"bare": 1})

    subs = {
        "critical:tenant_42": {"recover": True, "offset": top, "epoch": epoch},
        "tenant_42": {"recover": True},
    }
    again = await connect_subs(gw, subs)
    assert again["critical:tenant_42"] == {
        "recoverable": True,
        "epoch": epoch,
        "publications": [{"data": {"n": n}, "offset": top + n + 1} for n in range(3)],
        "recovered": True,
        "offset": top,
        "positioned": True,
        "was_recovering": True,
    }
    assert again["tenant_42"] == {"was_recovering": True}

    subs["critical:tenant_42"]["epoch"] = "Xyzw"
    stale = (await connect_subs(gw, subs))["critical:tenant_42"]
    assert "recovered" not in stale and "publications" not in stale and stale["offset"] == top + 3


# --- in process: publications that arrive while a subscribe is answered


async def subscribe_while_held(
    broker: GatedBroker, client: Any, params: dict[str, Any], *, after_read: bool
) -> asyncio.Task[None]:
    broker.hold(after_read=after_read)
    task = asyncio.create_task(send(client, 2, "subscribe", params))
    await asyncio.wait_for(broker.waiting.wait(), seconds(5))
    return task


@pytest.mark.parametrize("after_read", [True, False], ids=["after-the-read", "before-the-read"])
async def test_publications_during_a_recovering_subscribe_follow_the_reply_once_in_order(after_read: bool) -> None:
    broker = GatedBroker()
    async with in_process_node(broker=broker) as node:
        ch = "critical:tenant_42"
        results = [await node.publish(ch, Raw(b'{"n":%d}' % n)) for n in range(3)]
        epoch = results[0].position.epoch
        client, conn = await connected(node)
        params = {"channel": ch, "recover": True, "offset": 1, "epoch": epoch}
        task = await subscribe_while_held(broker, client, params, after_read=after_read)
        for n in (3, 4):
            await node.publish(ch, Raw(b'{"n":%d}' % n))
        assert conn.take() == []  # nothing before the reply
        broker.release()
        await task
        await node.publish(ch, Raw(b'{"n":5}'))
        await settle()

        reply, *pushes = conn.take()
        recovered = reply["subscribe"]["publications"]
        assert reply["subscribe"]["recovered"] is True and reply["subscribe"]["offset"] == 1
        delivered = [p["offset"] for p in recovered] + [m["push"]["pub"]["offset"] for m in pushes]
        assert delivered == [2, 3, 4, 5, 6]  # offsets 2..6 = n 1..5, each once, in order
        # Read before the publications landed: they follow the reply; read after: inside it.
        assert len(recovered) == (2 if after_read else 4)


async def test_a_hole_among_buffered_publications_is_insufficient_state() -> None:
    broker = GatedBroker()
    async with in_process_node(broker=broker) as node:
        ch = "critical:tenant_42"
        top = (await node.publish(ch, Raw(b'{"n":0}'))).position
        client, conn = await connected(node)
        task = await subscribe_while_held(broker, client, {"channel": ch}, after_read=True)
        # Offset 2 never reached this node (lost by PUB/SUB); 3 did.
        node.handle_publication(ch, Publication(data=Raw(b'{"n":2}'), offset=3), top.epoch)
        broker.release()
        await task
        await wait_until(lambda: any("unsubscribe" in p for p in conn.pushes()), "the unsubscribe push")
        reply, push = conn.take()
        assert reply["subscribe"]["offset"] == 1
        assert push == {"push": {"channel": ch, "unsubscribe": {"code": 2500, "reason": "insufficient state"}}}
        assert ch not in client.subs
        # The SDK subscribes again (recovering) and gets the stream as it really is.
        await send(client, 3, "subscribe", {"channel": ch, "recover": True, "offset": 1, "epoch": top.epoch})
        (again,) = conn.take()
        assert again["subscribe"]["recovered"] is True


async def test_a_publication_from_another_epoch_while_subscribing_is_insufficient_state() -> None:
    broker = GatedBroker()
    async with in_process_node(broker=broker, token_channels="subscribe") as node:
        ch = "critical:tenant_42"
        top = (await node.publish(ch, Raw(b'{"n":0}'))).position
        broker.hold()
        conn_task = asyncio.create_task(connected(node, channels=[ch]))
        await asyncio.wait_for(broker.waiting.wait(), seconds(5))
        node.handle_publication(ch, Publication(data=Raw(b"{}"), offset=top.offset + 1), "another")
        broker.release()
        _, conn = await conn_task
        await settle()
        assert conn.closed == (3010, "insufficient state")  # server-side: the connection goes


async def test_live_positions_skip_old_and_catch_gaps_and_new_epochs() -> None:
    async with in_process_node() as node:
        ch = "critical:tenant_42"
        top = (await node.publish(ch, Raw(b'{"n":0}'))).position
        client, conn = await connected(node)
        await send(client, 2, "subscribe", {"channel": ch})
        conn.take()
        node.handle_publication(ch, Publication(data=Raw(b"{}"), offset=1), top.epoch)  # already had it
        node.handle_publication(ch, Publication(data=Raw(b'{"n":1}'), offset=2), top.epoch)
        node.handle_publication(ch, Publication(data=Raw(b'{"n":"gap"}'), offset=4), top.epoch)
        node.handle_publication(ch, Publication(data=Raw(b'{"n":"after"}'), offset=5), top.epoch)
        await settle()
        assert conn.take() == [
            {"push": {"channel": ch, "pub": {"data": {"n": 1}, "offset": 2}}},
            {"push": {"channel": ch, "unsubscribe": {"code": 2500, "reason": "insufficient state"}}},
        ]
        await send(client, 3, "subscribe", {"channel": ch})
        conn.take()
        node.handle_publication(ch, Publication(data=Raw(b"{}"), offset=3), "another")
        await settle()
        assert conn.take() == [{"push": {"channel": ch, "unsubscribe": {"code": 2500, "reason": "insufficient state"}}}]


async def test_reject_unrecovered_answers_112_and_leaves_nothing_behind() -> None:
    """Subscribe flag bit 2 (the SDKs' get_state): error 112 instead of recovered:false."""
    async with in_process_node(namespaces=[NAMESPACES[0] | {"presence": True}]) as node:
        ch = "critical:tenant_42"
        await node.publish(ch, Raw(b'{"n":0}'))
        client, _ = await connected(node)
        intent = SubscribeIntent(channel=ch, recover=True, offset=0, epoch="Xyzw", reject_unrecovered=True)
        with pytest.raises(ReplyError) as raised:
            await open_subscription(client, intent)
        assert raised.value.code == 112
        assert ch not in client.subs and not node.hub.has_channel(ch)
        assert await node.presence(ch) == {}
        # Recoverable positions are answered as usual with the flag.
        top = await node.stream_top(ch, node.options(ch))
        intent = SubscribeIntent(channel=ch, recover=True, offset=0, epoch=top.epoch, reject_unrecovered=True)
        sub, result = await open_subscription(client, intent)
        release_buffer(client, sub)
        assert result.recovered and [p.offset for p in result.publications] == [1]


async def test_a_connection_that_ends_mid_subscribe_leaves_no_presence() -> None:
    broker = GatedBroker()
    namespaces = [NAMESPACES[0] | {"presence": True, "join_leave": True}]
    async with in_process_node(broker=broker, namespaces=namespaces) as node:
        ch = "critical:tenant_42"
        client, conn = await connected(node)
        task = await subscribe_while_held(broker, client, {"channel": ch}, after_read=True)
        client.transport_closed()  # the socket died while the stream was being read
        broker.release()
        await task
        await settle()
        assert await node.presence(ch) == {}
        assert not node.hub.has_channel(ch)
        assert conn.take() == []  # a closed connection writes nothing


async def test_concurrent_recoveries_share_a_read_but_never_one_already_under_way() -> None:
    """A storm's identical recoveries share one stream read; a subscriber arriving after that read
    was sent gets a read of its own, so a publication in between is never missed (no gap)."""
    broker = GatedBroker()
    async with in_process_node(broker=broker) as node:
        ch = "critical:tenant_42"
        top = (await node.publish(ch, Raw(b'{"n":0}'))).position
        reads = 0
        history = broker.history

        async def counting(channel: str, flt: Any, meta_ttl: float) -> Any:
            nonlocal reads
            reads += 1
            return await history(channel, flt, meta_ttl)

        broker.history = counting  # type: ignore[method-assign]
        params = {"channel": ch, "recover": True, "offset": top.offset, "epoch": top.epoch}
        first, first_conn = await connected(node)
        second, second_conn = await connected(node)
        broker.hold(after_read=True)
        # Two subscribers in the same loop turn: one read serves both.
        both = [
            asyncio.create_task(send(first, 2, "subscribe", params)),
            asyncio.create_task(send(second, 2, "subscribe", params)),
        ]
        await asyncio.wait_for(broker.waiting.wait(), seconds(5))
        assert reads == 1
        # The read is under way (done, answer held): a publication lands, then a third subscriber.
        await node.publish(ch, Raw(b'{"n":1}'))
        late, late_conn = await connected(node)
        late_task = asyncio.create_task(send(late, 2, "subscribe", params))
        await wait_until(lambda: reads == 2, "a read of the late subscriber's own")
        broker.release()
        await asyncio.gather(*both, late_task)
        await settle()
        for conn in (first_conn, second_conn, late_conn):
            messages = conn.take()
            reply = messages[0]["subscribe"]
            delivered = [p["offset"] for p in reply.get("publications", [])]
            delivered += [m["push"]["pub"]["offset"] for m in messages[1:] if "pub" in m.get("push", {})]
            assert reply["recovered"] is True and delivered == [top.offset + 1]
            assert not any("unsubscribe" in m.get("push", {}) for m in messages)
