"""Server-side refresh through the refresh and sub_refresh proxies (proxy.md §3.2, §3.5, §6): the
gateway asks the backend when a connection or subscription expires, and extends or ends it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.app_backend import AppBackend, Call, Reply
from tests.support.gateway import GatewayProcess, base_config, fresh_channel, running_gateway
from tests.support.raw import RawClient
from tests.support.timing import duration, seconds, wait_until
from tests.support.tokens import token

NAMESPACES = [
    {"name": "live", "proxy_subscribe": True, "proxy_sub_refresh": True},
    {"name": "plain", "allow_subscribe_for_client": True},
]


@pytest.fixture(scope="module")
def gateway(backend: AppBackend) -> Iterator[GatewayProcess]:
    config = base_config(
        **backend.endpoints("connect", "refresh", "subscribe", "sub_refresh", timeout=duration(1)),
        proxy_include_connection_meta=True,
        client_expired_sub_close_delay=duration(0.2),
        namespaces=NAMESPACES,
    )
    with running_gateway(config) as gw:
        yield gw


def in_seconds(n: float) -> int:
    return int(time.time() + seconds(n)) + 1


def extend_once() -> Callable[[Call], dict[str, object]]:
    """The first call extends by about a second (from when it is made); later ones say expired."""
    count = 0

    def answer(call: Call) -> dict[str, object]:
        nonlocal count
        count += 1
        return {"result": {"expire_at": in_seconds(0)}} if count == 1 else {"result": {"expired": True}}

    return answer


async def test_refresh_proxy_extends_then_ends_a_connection(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("connect", {"result": {"user": "r1", "expire_at": in_seconds(0), "meta": {"sid": 7}}})
    backend.answer("refresh", extend_once())
    raw = await RawClient.open(gateway.ws_url)
    reply = await raw.connect()
    # Server-side refresh: the SDK is not told to refresh (proxy.md §6).
    assert "expires" not in reply["connect"] and "ttl" not in reply["connect"]
    assert await raw.closed(timeout=seconds(6)) == (3005, "connection expired")
    calls = backend.calls("refresh")
    assert len(calls) == 2
    assert calls[0].body == {
        "client": reply["connect"]["client"],
        "transport": "websocket",
        "protocol": "json",
        "encoding": "json",
        "user": "r1",
        "meta": {"sid": 7},  # proxy_include_connection_meta
    }


async def test_refresh_proxy_serves_jwt_connections_too(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("refresh", {"result": {}})  # no expire_at: the connection ends
    raw = await RawClient.open(gateway.ws_url)
    reply = await raw.connect(token(user="j1", ttl=1))
    assert "expires" not in reply["connect"]
    assert await raw.closed(timeout=seconds(6)) == (3005, "connection expired")
    assert [call.body["user"] for call in backend.calls("refresh")] == ["j1"]
    assert backend.calls("connect") == []


async def test_refresh_failure_keeps_the_connection(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("connect", {"result": {"user": "r2", "expire_at": in_seconds(0)}})
    backend.answer("refresh", Reply(500))
    raw = await RawClient.open(gateway.ws_url)
    await raw.connect()
    await wait_until(lambda: backend.calls("refresh"), "the refresh call", within=4)
    reply = await raw.subscribe(fresh_channel("plain"))  # still connected: retried in 60 s
    assert "subscribe" in reply, reply
    await raw.close()


async def test_client_refresh_command_is_refused_in_server_side_mode(gateway: GatewayProcess) -> None:
    raw = await RawClient.open(gateway.ws_url)
    await raw.connect(token(user="j2"))
    await raw.send('{"id":5,"refresh":{"token":"' + token(user="j2") + '"}}')
    assert await raw.closed() == (3501, "bad request")


async def test_sub_refresh_proxy_extends_then_ends_a_subscription(gateway: GatewayProcess, backend: AppBackend) -> None:
    channel = fresh_channel("live")
    backend.answer("subscribe", {"result": {"expire_at": in_seconds(0)}})
    backend.answer("sub_refresh", extend_once())
    raw = await RawClient.open(gateway.ws_url)
    await raw.connect(token(user="s1"))
    reply = await raw.subscribe(channel)
    assert "expires" not in reply["subscribe"] and "ttl" not in reply["subscribe"]
    push = await raw.push(lambda p: "unsubscribe" in p, timeout=seconds(6))
    assert push == {"channel": channel, "unsubscribe": {"code": 2501, "reason": "subscription expired"}}
    calls = backend.calls("sub_refresh")
    assert len(calls) == 2
    assert {k: calls[0].body[k] for k in ("user", "channel")} == {"user": "s1", "channel": channel}
    await raw.close()


async def test_client_sub_refresh_is_refused_for_a_server_refreshed_subscription(
    gateway: GatewayProcess, backend: AppBackend
) -> None:
    channel = fresh_channel("live")
    backend.answer("subscribe", {"result": {"expire_at": in_seconds(100)}})
    raw = await RawClient.open(gateway.ws_url)
    await raw.connect(token(user="s2"))
    await raw.subscribe(channel)
    await raw.send(f'{{"id":9,"sub_refresh":{{"channel":"{channel}","token":"x"}}}}')
    assert await raw.closed() == (3501, "bad request")


async def test_expired_server_side_subscription_ends_the_connection(
    gateway: GatewayProcess, backend: AppBackend
) -> None:
    channel = fresh_channel("live")
    backend.answer("connect", {"result": {"user": "s3", "subs": {channel: {"expire_at": in_seconds(0)}}}})
    backend.answer("sub_refresh", {})  # no result: expired
    raw = await RawClient.open(gateway.ws_url)
    reply = await raw.connect()
    assert channel in reply["connect"]["subs"]
    assert await raw.closed(timeout=seconds(6)) == (3006, "subscription expired")
