"""Several gateway nodes on Redis: delivery, presence, control operations, history and revocation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.api import api, publish
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.redis import REDIS_URL, redis_prefix
from tests.support.timing import wait_until
from tests.support.tokens import token

NAMESPACES = [
    {"name": "critical", "history_size": 50, "history_ttl": "120s", "force_recovery": True},
    {
        "name": "chat",
        "presence": True,
        "join_leave": True,
        "force_push_join_leave": True,
        "allow_subscribe_for_client": True,
    },
]


def redis_config(prefix: str, **extra: Any) -> dict[str, Any]:
    return base_config(engine="redis", redis_address=REDIS_URL, redis_prefix=prefix, namespaces=NAMESPACES, **extra)


@pytest.fixture
def nodes() -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    with redis_prefix() as prefix:
        cfg = redis_config(prefix)
        with running_gateway(cfg) as a, running_gateway(cfg) as b:
            yield a, b


async def test_publication_on_one_node_reaches_subscribers_on_both(
    nodes: tuple[GatewayProcess, GatewayProcess],
) -> None:
    a, b = nodes
    on_a = await RawClient.open(a.ws_url)
    await on_a.connect(token())
    await on_a.subscribe("tenant_42")
    on_b = await RawClient.open(b.ws_url)
    await on_b.connect(token(user="6"))
    await on_b.subscribe("tenant_42")
    publish(b.api_url, "tenant_42", {"n": 1})
    publish(a.api_url, "tenant_42", {"n": 2})
    for client in (on_a, on_b):
        assert (await client.push())["pub"]["data"] == {"n": 1}
        assert (await client.push())["pub"]["data"] == {"n": 2}
        await client.close()


async def test_history_and_offsets_are_shared(nodes: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = nodes
    first = publish(a.api_url, "critical:tenant_42", {"n": 1})
    second = publish(b.api_url, "critical:tenant_42", {"n": 2})
    assert (first["offset"], second["offset"]) == (1, 2) and first["epoch"] == second["epoch"]
    page = api(a.api_url, "history", {"channel": "critical:tenant_42", "limit": -1})["result"]
    assert [p["data"]["n"] for p in page["publications"]] == [1, 2] and page["offset"] == 2


async def test_recovery_across_nodes(nodes: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = nodes
    c = await RawClient.open(a.ws_url)
    await c.connect(token())
    sub = (await c.subscribe("critical:tenant_42"))["subscribe"]
    await c.close()
    for n in range(3):
        publish(b.api_url, "critical:tenant_42", {"n": n})
    again = await RawClient.open(b.ws_url)
    await again.connect(token())
    reply = await again.subscribe("critical:tenant_42", recover=True, offset=sub.get("offset", 0), epoch=sub["epoch"])
    result = reply["subscribe"]
    assert result["recovered"] is True and result["was_recovering"] is True
    assert [p["data"]["n"] for p in result["publications"]] == [0, 1, 2]
    await again.close()


async def test_history_survives_a_restart_with_redis() -> None:
    with redis_prefix() as prefix, running_gateway(redis_config(prefix)) as gw:
        before = [publish(gw.api_url, "critical:tenant_42", {"n": n}) for n in range(3)]
        epoch = before[0]["epoch"]
        assert epoch and [p["offset"] for p in before] == [1, 2, 3]
        gw.restart()
        after = [publish(gw.api_url, "critical:tenant_42", {"n": n}) for n in range(3, 5)]
        assert [(p["offset"], p["epoch"]) for p in after] == [(4, epoch), (5, epoch)]  # the same stream goes on
        c = await RawClient.open(gw.ws_url)
        await c.connect(token())
        result = (await c.subscribe("critical:tenant_42", recover=True, offset=0, epoch=epoch))["subscribe"]
        assert result["recovered"] is True and result["epoch"] == epoch
        assert [(p["offset"], p["data"]) for p in result["publications"]] == [(n + 1, {"n": n}) for n in range(5)]
        await c.close()


async def test_presence_and_join_leave_across_nodes(nodes: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = nodes
    on_a = await RawClient.open(a.ws_url)
    await on_a.connect(token(user="5"))
    await on_a.subscribe("chat:room")
    on_b = await RawClient.open(b.ws_url)
    await on_b.connect(token(user="6"))
    await on_b.subscribe("chat:room")
    join = await on_a.push(lambda p: "join" in p and p["join"]["info"]["user"] == "6")
    assert join["channel"] == "chat:room"
    stats = api(a.api_url, "presence_stats", {"channel": "chat:room"})["result"]
    assert stats == {"num_clients": 2, "num_users": 2}
    await on_b.close()
    leave = await on_a.push(lambda p: "leave" in p)
    assert leave["leave"]["info"]["user"] == "6"
    stats = api(a.api_url, "presence_stats", {"channel": "chat:room"})["result"]
    assert stats == {"num_clients": 1, "num_users": 1}
    await on_a.close()


async def test_control_operations_reach_every_node(nodes: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = nodes
    c = await RawClient.open(a.ws_url)
    await c.connect(token(user="90"))
    await c.subscribe("tenant_42")
    api(b.api_url, "unsubscribe", {"user": "90", "channel": "tenant_42"})
    assert (await c.push())["unsubscribe"]["code"] == 2000
    api(b.api_url, "subscribe", {"user": "90", "channel": "chat:pushed"})
    assert (await c.push(lambda p: "subscribe" in p))["channel"] == "chat:pushed"
    api(b.api_url, "disconnect", {"user": "90"})
    assert await c.closed() == (3503, "force disconnect")


async def test_info_and_channels_cover_the_cluster(nodes: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = nodes
    on_a = await RawClient.open(a.ws_url)
    await on_a.connect(token())
    await on_a.subscribe("tenant_42")
    on_b = await RawClient.open(b.ws_url)
    await on_b.connect(token(user="6"))
    await on_b.subscribe("tenant_42")

    def both_nodes_with_their_clients() -> list[dict[str, Any]] | None:
        nodes_seen: list[dict[str, Any]] = api(a.api_url, "info", {})["result"]["nodes"]
        return nodes_seen if len(nodes_seen) == 2 and sum(n["num_clients"] for n in nodes_seen) == 2 else None

    # Peers report themselves every few seconds: wait for both nodes and fresh counts.
    await wait_until(
        both_nodes_with_their_clients, "both nodes in info, with the two clients between them", within=10, interval=0.2
    )
    channels = api(b.api_url, "channels", {})["result"]["channels"]
    assert channels["tenant_42"]["num_clients"] == 2
    await on_a.close()
    await on_b.close()


async def test_revocations_are_shared_and_outlive_nodes() -> None:
    with redis_prefix() as prefix:
        cfg = redis_config(prefix)
        with running_gateway(cfg) as a:
            holder = await RawClient.open(a.ws_url)
            tok = token(user="77", extra={"jti": "revoked-everywhere"})
            await holder.connect(tok)
            api(a.api_url, "revoke_token", {"uid": "revoked-everywhere", "expire_at": int(time.time()) + 600})
            assert await holder.closed() == (3005, "connection expired")
        # A node that starts later still refuses the revoked token.
        with running_gateway(cfg) as late:
            c = await RawClient.open(late.ws_url)
            reply = await c.connect(tok)
            assert reply["error"] == {"code": 109, "message": "token expired"}
            await c.close()


async def test_idempotency_across_nodes(nodes: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = nodes
    first = publish(a.api_url, "critical:idem", {"n": 1}, idempotency_key="once")
    again = publish(b.api_url, "critical:idem", {"n": 1}, idempotency_key="once")
    assert first == again
    page = api(a.api_url, "history", {"channel": "critical:idem", "limit": -1})["result"]
    assert len(page["publications"]) == 1
