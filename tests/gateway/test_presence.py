"""Presence and join/leave (spec §2.5, §2.6, §3, §8.2).

Presence counts follow subscriptions: they grow on subscribe and shrink on unsubscribe and
however a connection ends (closed by the client, by the gateway, or its TCP connection killed
without a close frame). Join/leave pushes go to every subscriber with ``force_push_join_leave``,
otherwise only to subscribers that asked for them (``join_leave``) and may read presence.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from centrifuge import Client

from tests.support.api import api
from tests.support.gateway import GatewayProcess, base_config, fresh_channel, running_gateway
from tests.support.proxy import TcpProxy
from tests.support.pyclient import Recorder, close_client
from tests.support.raw import RawClient
from tests.support.timing import duration, seconds, wait_until
from tests.support.tokens import token

OPEN = {"allow_subscribe_for_client": True}
NAMESPACES = [
    # Join/leave published, pushed only to subscribers that ask; presence readable by subscribers.
    {"name": "room", "presence": True, "join_leave": True, "allow_presence_for_subscriber": True, **OPEN},
    # Join/leave pushed to every subscriber; presence readable by any client.
    {
        "name": "lobby",
        "presence": True,
        "join_leave": True,
        "force_push_join_leave": True,
        "allow_presence_for_client": True,
        **OPEN,
    },
    # Presence kept, but clients may not read it, and no join/leave.
    {"name": "quiet", "presence": True, **OPEN},
]


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    with running_gateway(base_config(namespaces=NAMESPACES)) as gateway:
        yield gateway


@pytest.fixture
async def proxy(gw: GatewayProcess) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(gw.port) as p:
        yield p


async def member(url: str, user: str, channel: str, name: str = "", **params: Any) -> tuple[RawClient, str]:
    """A raw client of ``user`` subscribed to ``channel``; (client, its client id)."""
    c = await RawClient.open(url)
    reply = await c.connect(token(user=user, channels=[], info={"name": name or user}))
    assert "subscribe" in await c.subscribe(channel, **params)
    return c, reply["connect"]["client"]


def stats(gw: GatewayProcess, channel: str) -> tuple[int, int]:
    result = api(gw.api_url, "presence_stats", {"channel": channel})["result"]
    return result["num_clients"], result["num_users"]


async def stats_become(gw: GatewayProcess, channel: str, expected: tuple[int, int]) -> None:
    """Removal after a dead connection is asynchronous: poll until the counts match."""
    await wait_until(lambda: stats(gw, channel) == expected, f"presence stats {expected} on {channel}")


async def test_counts_follow_connect_subscribe_unsubscribe_and_every_kind_of_disconnect(
    gw: GatewayProcess, proxy: TcpProxy
) -> None:
    ch = fresh_channel("lobby")
    bystander = await RawClient.open(gw.ws_url)
    await bystander.connect(token(user="9", channels=[]))
    assert stats(gw, ch) == (0, 0)  # connected, not subscribed: not present

    alice1, _ = await member(gw.ws_url, "alice", ch)
    assert stats(gw, ch) == (1, 1)
    alice2, _ = await member(gw.ws_url, "alice", ch)
    assert stats(gw, ch) == (2, 1)  # one user, two connections
    bob, _ = await member(proxy.ws_url, "bob", ch)
    carol, _ = await member(gw.ws_url, "carol", ch)
    dave, _ = await member(gw.ws_url, "dave", ch)
    assert stats(gw, ch) == (5, 4)

    assert (await alice2.command("unsubscribe", {"channel": ch})) == {"id": 3, "unsubscribe": {}}
    assert stats(gw, ch) == (4, 4)

    assert proxy.cut_all() == 1  # bob's TCP connection dies without a close frame
    await stats_become(gw, ch, (3, 3))

    await carol.close()  # an orderly close by the client
    await stats_become(gw, ch, (2, 2))

    api(gw.api_url, "disconnect", {"user": "dave"})  # closed by the gateway
    assert (await dave.closed())[0] == 3503
    await stats_become(gw, ch, (1, 1))

    presence = api(gw.api_url, "presence", {"channel": ch})["result"]["presence"]
    ((client_id, info),) = presence.items()
    assert info == {"user": "alice", "client": client_id, "conn_info": {"name": "alice"}}
    for c in (alice1, alice2, bystander, bob, carol, dave):
        await c.close()
    await stats_become(gw, ch, (0, 0))
    assert api(gw.api_url, "presence", {"channel": ch}) == {"result": {"presence": {}}}


async def test_client_presence_commands_and_permissions(gw: GatewayProcess) -> None:
    lobby, room, quiet = fresh_channel("lobby"), fresh_channel("room"), fresh_channel("quiet")
    a, a_id = await member(gw.ws_url, "a", lobby, name="Ann")
    b, _ = await member(gw.ws_url, "b", room)
    await a.subscribe(quiet)

    presence = (await b.command("presence", {"channel": lobby}))["presence"]  # any client may read lobby
    assert presence == {"presence": {a_id: {"user": "a", "client": a_id, "conn_info": {"name": "Ann"}}}}
    assert (await b.command("presence_stats", {"channel": lobby}))["presence_stats"] == {
        "num_clients": 1,
        "num_users": 1,
    }
    # room: subscribers only.
    assert (await a.command("presence", {"channel": room}))["error"]["code"] == 103
    assert (await b.command("presence_stats", {"channel": room}))["presence_stats"] == {
        "num_clients": 1,
        "num_users": 1,
    }
    # quiet: presence is kept but not readable by clients; the API still reads it.
    assert (await a.command("presence", {"channel": quiet}))["error"]["code"] == 103
    assert stats(gw, quiet) == (1, 1)
    # No presence in the namespace at all: 108, for clients and the API.
    assert (await a.command("presence_stats", {"channel": "tenant_42"}))["error"] == {
        "code": 108,
        "message": "not available",
    }
    assert api(gw.api_url, "presence", {"channel": "tenant_42"})["error"]["code"] == 108
    assert api(gw.api_url, "presence_stats", {"channel": "nope:x"})["error"]["code"] == 102
    await a.close()
    await b.close()


async def test_forced_join_leave_reach_every_subscriber_including_the_joiner(gw: GatewayProcess) -> None:
    ch = fresh_channel("lobby")
    first, first_id = await member(gw.ws_url, "u1", ch)
    own_join = await first.push(lambda p: "join" in p)
    assert own_join == {
        "channel": ch,
        "join": {"info": {"user": "u1", "client": first_id, "conn_info": {"name": "u1"}}},
    }
    second, second_id = await member(gw.ws_url, "u2", ch)
    join = await first.push(lambda p: "join" in p)
    assert join["join"]["info"]["client"] == second_id
    await second.close()
    leave = await first.push(lambda p: "leave" in p)
    assert leave == {"channel": ch, "leave": {"info": {"user": "u2", "client": second_id, "conn_info": {"name": "u2"}}}}
    await first.close()


async def test_join_leave_only_for_subscribers_that_ask(gw: GatewayProcess, proxy: TcpProxy) -> None:
    ch = fresh_channel("room")
    asked, _ = await member(gw.ws_url, "u1", ch, join_leave=True)
    silent, _ = await member(gw.ws_url, "u2", ch)
    newcomer, newcomer_id = await member(proxy.ws_url, "u3", ch)
    assert (await asked.push(lambda p: "join" in p and p["join"]["info"]["client"] == newcomer_id))["channel"] == ch
    proxy.cut_all()  # the newcomer vanishes without a close frame: a leave all the same
    leave = await asked.push(lambda p: "leave" in p)
    assert leave["leave"]["info"]["client"] == newcomer_id
    # The subscriber that did not ask got neither; a fence publication proves nothing is pending.
    api(gw.api_url, "publish", {"channel": ch, "data": {"fence": 1}})
    fence = await silent.push()
    assert fence == {"channel": ch, "pub": {"data": {"fence": 1}}}
    for c in (asked, silent, newcomer):
        await c.close()


async def test_python_sdk_join_leave_and_presence(gw: GatewayProcess) -> None:
    ch = fresh_channel("lobby")
    recorder = Recorder()
    client = Client(gw.ws_url, token=token(user="sdk", channels=[]), events=recorder.client_handler())
    sub = client.new_subscription(ch, events=recorder.sub_handler(ch))
    other: RawClient | None = None
    try:
        await client.connect()
        await sub.subscribe()
        await recorder.wait_for("sub:subscribed", ch)
        other, other_id = await member(gw.ws_url, "other", ch)
        join = await recorder.wait_for("sub:join", ch, where=lambda ctx: ctx.info.client == other_id)
        assert join.ctx.info.user == "other"
        counts = await sub.presence_stats()
        assert (counts.num_clients, counts.num_users) == (2, 2)
        members = await sub.presence()
        assert {info.user for info in members.clients.values()} == {"sdk", "other"}
        await other.close()
        other = None
        leave = await recorder.wait_for("sub:leave", ch)
        assert leave.ctx.info.client == other_id
        await sub.unsubscribe()
        await stats_become(gw, ch, (0, 0))
    finally:
        if other is not None:
            await other.close()
        await close_client(client)


async def test_entries_of_live_connections_are_renewed_past_the_presence_ttl() -> None:
    """Entries expire after ``global_presence_ttl`` unless renewed, as in a shared engine; a live
    connection's entries are renewed every ``client_presence_update_interval``."""
    ttl, interval = 1.5, 0.15  # time units: a renewal may be late by most of a ttl
    cfg = base_config(
        namespaces=NAMESPACES, global_presence_ttl=duration(ttl), client_presence_update_interval=duration(interval)
    )
    with running_gateway(cfg) as gw:
        ch = fresh_channel("lobby")
        c, _ = await member(gw.ws_url, "u1", ch)
        loop = asyncio.get_running_loop()
        watched_until = loop.time() + seconds(2 * ttl)  # the entry outlives two ttls
        while loop.time() < watched_until:
            assert stats(gw, ch) == (1, 1)
            await asyncio.sleep(seconds(interval))
        await c.close()
        await stats_become(gw, ch, (0, 0))
