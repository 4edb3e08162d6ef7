"""Unidirectional transports with plain clients, no SDK (spec §1.7): ``uni_websocket`` (the
``websockets`` library), ``uni_sse`` and ``uni_http_stream`` (aiohttp's HTTP client, reading
the response as it streams). A client sends one ConnectRequest and only receives pushes,
without the Reply wrapper; connect errors arrive as disconnect pushes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import websockets

from tests.support.api import api, publish
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.timing import seconds
from tests.support.tokens import token

UNI = ["uni_websocket", "uni_sse", "uni_http_stream"]
Push = dict[str, Any]


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    cfg = base_config(uni_websocket=True, uni_sse=True, uni_http_stream=True, user_subscribe_to_personal=True)
    with running_gateway(cfg) as gw:
        yield gw


class UniClient:
    """The pushes one unidirectional connection received, in order."""

    def __init__(self) -> None:
        self.pushes: list[Push] = []
        self.ended = asyncio.Event()
        self._changed = asyncio.Event()

    def add(self, push: Push) -> None:
        self.pushes.append(push)
        self._changed.set()

    async def next_where(self, key: str, since: int = 0) -> Push:
        """The first push at index ``since`` or later that has ``key`` (waits for it)."""
        async with asyncio.timeout(seconds(5)):
            while True:
                for push in self.pushes[since:]:
                    if key in push:
                        return push
                if self.ended.is_set():
                    raise AssertionError(f"the stream ended without a {key!r} push: {self.pushes}")
                self._changed.clear()
                await self._changed.wait()


async def _read_websocket(url: str, request: dict[str, Any], client: UniClient) -> None:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps(request))
        try:
            async for message in ws:
                assert isinstance(message, str), "a text frame per push"
                client.add(json.loads(message))  # one push per frame
        except websockets.ConnectionClosed:
            pass


async def _read_stream(
    session: aiohttp.ClientSession, transport: str, url: str, request: dict[str, Any], client: UniClient
) -> None:
    if transport == "uni_sse":
        context = session.get(f"{url}?cf_connect={quote(json.dumps(request))}")
    else:
        context = session.post(url, data=json.dumps(request))
    async with context as response:
        assert response.status == 200
        if transport == "uni_sse":
            assert response.headers["Content-Type"].startswith("text/event-stream")
        async for line in response.content:
            text = line.decode().strip()
            if transport == "uni_sse":
                if text.startswith("data: "):
                    client.add(json.loads(text[len("data: ") :]))
            elif text:
                client.add(json.loads(text))


@asynccontextmanager
async def uni_client(gw: GatewayProcess, transport: str, request: dict[str, Any]) -> AsyncIterator[UniClient]:
    client = UniClient()
    scheme = "ws" if transport == "uni_websocket" else "http"
    url = f"{scheme}://127.0.0.1:{gw.port}/connection/{transport}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:

        async def run() -> None:
            try:
                if transport == "uni_websocket":
                    await _read_websocket(url, request, client)
                else:
                    await _read_stream(session, transport, url, request, client)
            finally:
                client.ended.set()

        task = asyncio.create_task(run())
        try:
            yield client
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("transport", UNI)
async def test_receives_publications_of_the_channels_it_may_subscribe_to(
    gateway: GatewayProcess, transport: str
) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    request = {"token": token(user=user, channels=["tenant_42"]), "subs": {"tenant_42": {}, "tenant_43": {}}}
    async with uni_client(gateway, transport, request) as client:
        connect = (await client.next_where("connect"))["connect"]
        assert connect["client"] and connect["session"] and "pong" not in connect
        # The granted channel and the personal channel; tenant_43 was not granted: left out.
        assert set(connect["subs"]) == {"tenant_42", f"#{user}"}
        await asyncio.to_thread(publish, gateway.api_url, "tenant_43", {"not": "yours"})
        await asyncio.to_thread(publish, gateway.api_url, "tenant_42", {"order": 1})
        await asyncio.to_thread(publish, gateway.api_url, f"#{user}", {"personal": True})
        first = await client.next_where("pub")
        assert first == {"channel": "tenant_42", "pub": {"data": {"order": 1}}}  # no Reply wrapper
        index = client.pushes.index(first)
        assert (await client.next_where("pub", since=index + 1)) == {
            "channel": f"#{user}",
            "pub": {"data": {"personal": True}},
        }


@pytest.mark.parametrize("transport", UNI)
async def test_gets_the_disconnect_push_and_the_stream_ends(gateway: GatewayProcess, transport: str) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    async with uni_client(gateway, transport, {"token": token(user=user)}) as client:
        await client.next_where("connect")
        await asyncio.to_thread(api, gateway.api_url, "disconnect", {"user": user})
        push = await client.next_where("disconnect")
        assert push == {"disconnect": {"code": 3503, "reason": "force disconnect"}}
        async with asyncio.timeout(seconds(5)):
            await client.ended.wait()


# Connect requests by kind, made when the test runs (tokens expire: not at collection time).
CONNECT_ERRORS: dict[str, tuple[Callable[[], dict[str, Any]], int]] = {
    "invalid-token": (lambda: {"token": "not-a-token"}, 3500),
    "expired-token": (lambda: {"token": token(ttl=-30)}, 3005),  # error 109 -> connection expired
    "no-credentials": (lambda: {}, 3501),
    "unknown-namespace": (lambda: {"token": token(channels=["tenant_42"]), "subs": {"nowhere:x": {}}}, 3501),
}


@pytest.mark.parametrize("transport", UNI)
@pytest.mark.parametrize("kind", list(CONNECT_ERRORS))
async def test_connect_errors_are_disconnect_pushes(gateway: GatewayProcess, transport: str, kind: str) -> None:
    make_request, code = CONNECT_ERRORS[kind]
    async with uni_client(gateway, transport, make_request()) as client:
        push = await client.next_where("disconnect")
        assert push["disconnect"]["code"] == code, push
        assert not any("connect" in p for p in client.pushes)


async def test_a_second_message_on_a_uni_websocket_is_a_bad_request(gateway: GatewayProcess) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/connection/uni_websocket") as ws:
        await ws.send(json.dumps({"token": token()}))
        assert "connect" in json.loads(await ws.recv())
        await ws.send("{}")
        assert json.loads(await ws.recv()) == {"disconnect": {"code": 3501, "reason": "bad request"}}
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 3501


@pytest.mark.parametrize(("path", "method", "status"), [("uni_http_stream", "GET", 405), ("uni_sse", "PUT", 405)])
async def test_wrong_methods_are_refused(gateway: GatewayProcess, path: str, method: str, status: int) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{gateway.http_url}/connection/{path}") as response,
    ):
        assert response.status == status


async def test_a_body_over_the_limit_is_refused_with_413(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as session:
        body = json.dumps({"token": "x" * 70_000})
        async with session.post(f"{gateway.http_url}/connection/uni_http_stream", data=body) as response:
            assert response.status == 413


async def test_transports_that_are_off_are_not_found() -> None:
    with running_gateway(base_config()) as gw:
        async with aiohttp.ClientSession() as session:
            for path in ("uni_http_stream", "http_stream", "emulation"):
                async with session.post(f"{gw.http_url}/connection/{path}", data="{}") as response:
                    assert response.status == 404, path
