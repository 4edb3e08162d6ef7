"""The admin UI's endpoints on several nodes sharing Redis: one admin page sees and acts on the
whole cluster (nodes, a user's connections wherever they are, disconnect, watch), and with
``workers`` a session works whichever worker takes the request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.support.admin import admin_call, admin_config, admin_login, admin_request
from tests.support.api import publish
from tests.support.gateway import GatewayProcess, fresh_channel, running_gateway
from tests.support.raw import RawClient
from tests.support.redis import REDIS_URL, redis_prefix
from tests.support.timing import seconds, wait_until, wait_until_sync
from tests.support.tokens import token


def on_redis(prefix: str, **extra: Any) -> dict[str, Any]:
    return admin_config(engine="redis", redis_address=REDIS_URL, redis_prefix=prefix, **extra)


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    with (
        redis_prefix() as prefix,
        running_gateway(on_redis(prefix, name="node-a")) as a,
        running_gateway(on_redis(prefix, name="node-b")) as b,
    ):
        yield a, b


def node_names(gw: GatewayProcess, cookie: str) -> set[str]:
    return {node["name"] for node in admin_call(gw, cookie, "info")["nodes"]}


async def test_one_admin_page_sees_and_acts_on_the_whole_cluster(
    two_nodes: tuple[GatewayProcess, GatewayProcess],
) -> None:
    a, b = two_nodes
    cookie = admin_login(a)
    await wait_until(lambda: node_names(a, cookie) == {"node-a", "node-b"}, "node-a to hear of node-b")
    # A session signed by one node is good on another configured alike: nothing is stored.
    assert admin_request(b, "api/info", {}, cookie=cookie).status == 200

    channel = fresh_channel("watched")
    on_b = await RawClient.open(b.ws_url)
    await on_b.connect(token(user="remote-user", channels=[channel]))
    await on_b.subscribe(channel)

    # node-a's admin finds the connection held by node-b, with node-b's name on it.
    found = admin_call(a, cookie, "connections", {"user": "remote-user"})["connections"]
    assert [(info["node"], info["channels"]) for info in found.values()] == [("node-b", [channel])]
    assert admin_call(a, cookie, "channels", {"pattern": channel})["channels"] == {channel: {"num_clients": 1}}

    # Watching on node-a shows what is published on node-b.
    headers = {"Cookie": f"herald_admin={cookie}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{a.http_url}/admin/watch", params={"channel": channel}, headers=headers) as watch,
    ):
        assert json.loads(await _data_line(watch)) == {"channel": channel}
        publish(b.api_url, channel, {"via": "node-b"})
        assert json.loads(await _data_line(watch))["pub"]["data"] == {"via": "node-b"}

    # Disconnecting from node-a closes the socket on node-b.
    (client_id,) = found
    assert admin_call(a, cookie, "disconnect", {"user": "remote-user", "client": client_id}) == {}
    assert (await on_b.closed()) == (3503, "force disconnect")
    await wait_until(
        lambda: admin_call(a, cookie, "connections", {"user": "remote-user"}) == {"connections": {}},
        "the connection to leave the cluster's list",
    )


def test_every_worker_is_listed_and_accepts_the_session() -> None:
    with redis_prefix() as prefix, running_gateway(on_redis(prefix, workers=2)) as gw:
        cookie = admin_login(gw)  # any worker may take it
        # Until every worker knows the other: each asks of a worker chosen by the kernel.
        wait_until_sync(
            lambda: all(len(admin_call(gw, cookie, "info")["nodes"]) == 2 for _ in range(8)),
            "the two workers to know each other",
            within=15,
        )
        # Each request is a new TCP connection, spread over the workers by the kernel.
        for _ in range(8):
            nodes = admin_call(gw, cookie, "info")["nodes"]
            assert len(nodes) == 2 and all(node["name"].endswith(("_w0", "_w1")) for node in nodes), nodes


async def _data_line(resp: aiohttp.ClientResponse) -> str:
    """The data of the next Server-Sent Event that has some."""
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), seconds(5))).decode().strip()
        if line.startswith("data:"):
            return line[5:].strip()
