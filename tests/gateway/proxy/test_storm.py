"""Storm safety of the proxy (``proxy_max_concurrency``): a burst of token-less connects never
puts more calls in flight than the bound, the excess is told to reconnect later (3013) at once;
other calls wait for a slot; calls share a few kept-alive TCP connections."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.app_backend import AppBackend, Reply
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.raw import RawClient
from tests.support.timing import duration, seconds
from tests.support.tokens import token

BOUND = 3


@pytest.fixture(scope="module")
def gateway(backend: AppBackend) -> Iterator[GatewayProcess]:
    config = base_config(
        **backend.endpoints("connect", "rpc", timeout=duration(4)),
        proxy_max_concurrency=BOUND,
        prometheus=True,
    )
    with running_gateway(config) as gw:
        yield gw


async def connect_once(gateway: GatewayProcess) -> str | int:
    """ "connected", or the close code the gateway answered the connect with."""
    raw = await RawClient.open(gateway.ws_url)
    await raw.send('{"id":1,"connect":{}}')
    try:
        reply = await raw.reply(1, timeout=seconds(8))
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, exc
        return exc.rcvd.code
    await raw.close()
    assert "connect" in reply, reply
    return "connected"


def metrics(gateway: GatewayProcess) -> str:
    with urllib.request.urlopen(f"{gateway.http_url}/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
        return text


async def test_a_connect_burst_stays_within_the_bound(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("connect", Reply.json({"result": {"user": "storm"}}, delay=seconds(0.5)))
    outcomes = await asyncio.gather(*(connect_once(gateway) for _ in range(20)))
    assert backend.peak <= BOUND, backend.peak
    refused = [o for o in outcomes if o != "connected"]
    assert set(refused) == {3013}, outcomes  # "too many requests": a reconnect code
    assert outcomes.count("connected") >= BOUND
    assert len(backend.calls("connect")) == outcomes.count("connected")
    assert 'herald_proxy_calls_total{kind="connect",outcome="busy"}' in metrics(gateway)


async def test_other_calls_wait_for_a_slot(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("rpc", Reply.json({"result": {"data": {"ok": True}}}, delay=seconds(0.3)))
    clients = [await RawClient.open(gateway.ws_url) for _ in range(BOUND * 2 + 1)]
    for raw in clients:
        await raw.connect(token(user="w"))
    replies = await asyncio.gather(*(raw.command("rpc", {"method": "m"}) for raw in clients))
    assert [reply.get("rpc") for reply in replies] == [{"data": {"ok": True}}] * len(clients)
    assert backend.peak <= BOUND, backend.peak
    assert len(backend.calls("rpc")) == len(clients)
    for raw in clients:
        await raw.close()


async def test_calls_reuse_kept_alive_connections(gateway: GatewayProcess, backend: AppBackend) -> None:
    backend.answer("rpc", {"result": {}})
    raw = await RawClient.open(gateway.ws_url)
    await raw.connect(token(user="k"))
    for _ in range(30):
        await raw.command("rpc", {"method": "ping-backend"})
    assert len(backend.calls("rpc")) == 30
    # 30 calls, one after another, over the pool's few connections (at most one per slot).
    assert len(backend.connections()) <= BOUND, backend.connections()
    await raw.close()
