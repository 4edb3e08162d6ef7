"""The connect proxy on the unidirectional transports (proxy.md §2, §4): the request names the
transport, carries the listed headers of the client's own HTTP request, and the backend's
answers and failures become disconnects, as a unidirectional client cannot read an error reply."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import websockets

from tests.support.app_backend import AppBackend, Reply
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.timing import duration, seconds

UNI = ["uni_websocket", "uni_sse", "uni_http_stream"]
HEADERS = {"Cookie": "sessionid=uni", "X-Other": "not forwarded"}


@pytest.fixture(scope="module")
def gateway(backend: AppBackend) -> Iterator[GatewayProcess]:
    config = base_config(
        **backend.endpoints("connect", timeout=duration(1)),
        proxy_http_headers=["Cookie"],
        uni_websocket=True,
        uni_sse=True,
        uni_http_stream=True,
    )
    with running_gateway(config) as gw:
        yield gw


async def first_pushes(gw: GatewayProcess, transport: str, request: dict[str, Any], count: int) -> list[Any]:
    """The first ``count`` pushes of a unidirectional connection (fewer if the stream ends)."""
    pushes: list[Any] = []
    if transport == "uni_websocket":
        url = f"ws://127.0.0.1:{gw.port}/connection/uni_websocket"
        async with websockets.connect(url, additional_headers=HEADERS) as ws:
            await ws.send(json.dumps(request))
            try:
                while len(pushes) < count:
                    pushes.append(json.loads(await ws.recv()))
            except websockets.ConnectionClosed:
                pass
        return pushes
    url = f"http://127.0.0.1:{gw.port}/connection/{transport}"
    timeout = aiohttp.ClientTimeout(total=seconds(5))
    async with aiohttp.ClientSession(timeout=timeout, headers=HEADERS) as session:
        if transport == "uni_sse":
            context = session.get(f"{url}?cf_connect={quote(json.dumps(request))}")
        else:
            context = session.post(url, data=json.dumps(request))
        async with context as response:
            assert response.status == 200
            async for line in response.content:
                text = line.decode().strip()
                if text.startswith("data: "):
                    text = text[len("data: ") :]
                elif transport == "uni_sse" or not text:
                    continue
                pushes.append(json.loads(text))
                if len(pushes) == count:
                    break
    return pushes


@pytest.mark.parametrize("transport", UNI)
async def test_connect_proxy_on_unidirectional_transports(
    gateway: GatewayProcess, backend: AppBackend, transport: str
) -> None:
    backend.answer("connect", {"result": {"user": "u1", "data": {"hello": transport}}})
    [push] = await first_pushes(gateway, transport, {"data": {"via": transport}}, 1)
    assert push["connect"]["data"] == {"hello": transport}
    [call] = backend.calls("connect")
    assert call.body["transport"] == transport
    assert call.body["data"] == {"via": transport}
    assert call.headers["cookie"] == "sessionid=uni"
    assert "x-other" not in call.headers


@pytest.mark.parametrize("transport", UNI)
@pytest.mark.parametrize(
    ("answer", "disconnect"),
    [
        (Reply(500), {"code": 3004, "reason": "internal server error"}),
        (Reply.json({"error": {"code": 1403, "message": "no"}}), {"code": 3004, "reason": "internal server error"}),
        (Reply.json({"disconnect": {"code": 4509, "reason": "nope"}}), {"code": 4509, "reason": "nope"}),
    ],
    ids=["failure", "custom-error", "custom-disconnect"],
)
async def test_connect_proxy_refusals_are_disconnects(
    gateway: GatewayProcess, backend: AppBackend, transport: str, answer: Reply, disconnect: dict[str, Any]
) -> None:
    backend.answer("connect", answer)
    pushes = await first_pushes(gateway, transport, {}, 1)
    assert pushes == [{"disconnect": disconnect}]
