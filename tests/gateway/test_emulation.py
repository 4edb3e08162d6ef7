"""The emulation endpoint on the wire (spec §1.8): a raw HTTP-streaming session whose commands
are POSTed to the node holding it, to another node of the cluster (passed on through Redis),
or to a node nobody knows (404); and how bad requests are answered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.redis import REDIS_URL, redis_prefix
from tests.support.timing import seconds, wait_until
from tests.support.tokens import token


class Stream:
    """The JSON replies of one raw HTTP-streaming session, in order."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def reply(self, cmd_id: int) -> dict[str, Any]:
        async with asyncio.timeout(seconds(5)):
            while True:
                for reply in self.replies:
                    if reply.get("id") == cmd_id:
                        return reply
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def http_stream(gw: GatewayProcess) -> AsyncIterator[tuple[Stream, dict[str, Any]]]:
    """An HTTP-streaming session on ``gw``; yields it and its connect result."""
    stream = Stream()
    body = json.dumps({"id": 1, "connect": {"token": token()}})
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session,
        session.post(f"{gw.http_url}/connection/http_stream", data=body) as response,
    ):
        assert response.status == 200 and response.headers["Content-Type"] == "application/json"

        async def read() -> None:
            async for line in response.content:
                if line.strip():
                    stream.replies.append(json.loads(line))
                    stream.changed.set()

        reader = asyncio.create_task(read())
        try:
            connect = (await stream.reply(1))["connect"]
            assert connect["session"] and connect["node"] and connect["pong"] is True
            yield stream, connect
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def emulate(gw: GatewayProcess, body: bytes | str, **headers: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gw.http_url}/emulation", data=body, headers=headers) as r,
    ):
        return r.status


def command(session: str, node: str, *commands: dict[str, Any]) -> str:
    frame = "\n".join(json.dumps(c) for c in commands)
    return json.dumps({"session": session, "node": node, "data": frame})


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    with running_gateway(base_config(http_stream=True, emulation_max_request_body_size=4096)) as gw:
        yield gw


async def test_commands_posted_to_the_endpoint_are_answered_on_the_stream(gateway: GatewayProcess) -> None:
    async with http_stream(gateway) as (stream, connect):
        status = await emulate(
            gateway,
            command(
                connect["session"],
                connect["node"],
                {"id": 2, "rpc": {"method": "x"}},
                {"id": 3, "history": {"channel": "tenant_42"}},
            ),
        )
        assert status == 204
        assert (await stream.reply(2))["error"] == {"code": 108, "message": "not available"}
        assert (await stream.reply(3))["error"]["code"] == 108  # no history in that namespace
        assert [r["id"] for r in stream.replies] == [1, 2, 3]  # in order


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("not json", 400),
        (json.dumps({"session": "s"}), 400),  # no node, no data
        (json.dumps({"session": "", "node": "n", "data": "{}"}), 400),
        (json.dumps({"session": "s", "node": "no-such-node", "data": "{}"}), 404),
        ("x" * 5000, 413),
    ],
)
async def test_bad_emulation_requests(gateway: GatewayProcess, body: str, status: int) -> None:
    assert await emulate(gateway, body) == status


async def test_a_session_that_ended_on_its_node_is_204(gateway: GatewayProcess) -> None:
    async with http_stream(gateway) as (_, connect):
        node = connect["node"]
    assert await emulate(gateway, command("gone-session", node, {"id": 2, "rpc": {}})) == 204


async def test_protobuf_emulation_requests_reach_a_protobuf_stream(gateway: GatewayProcess) -> None:
    from centrifuge.protocol import client_pb2

    def delimited(msg: Any) -> bytes:
        body: bytes = msg.SerializeToString()
        prefix = bytearray()
        n = len(body)
        while n > 0x7F:
            prefix.append((n & 0x7F) | 0x80)
            n >>= 7
        return bytes(prefix) + bytes((n,)) + body

    connect = client_pb2.Command(id=1)
    connect.connect.token = token()
    headers = {"Content-Type": "application/octet-stream"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session,
        session.post(f"{gateway.http_url}/connection/http_stream", data=delimited(connect), headers=headers) as resp,
    ):
        assert resp.headers["Content-Type"] == "application/octet-stream"
        buffer = b""

        async def next_reply() -> Any:
            nonlocal buffer
            while True:
                length, shift, pos = 0, 0, 0
                while pos < len(buffer):
                    byte = buffer[pos]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    pos += 1
                    if not byte & 0x80:
                        if len(buffer) >= pos + length:
                            reply = client_pb2.Reply.FromString(buffer[pos : pos + length])
                            buffer = buffer[pos + length :]
                            return reply
                        break
                buffer += await resp.content.readany()

        first = await asyncio.wait_for(next_reply(), seconds(5))
        rpc = client_pb2.Command(id=2)
        rpc.rpc.method = "x"
        request = client_pb2.EmulationRequest(node=first.connect.node, session=first.connect.session)
        request.data = delimited(rpc)
        assert await emulate(gateway, request.SerializeToString(), **headers) == 204
        second = await asyncio.wait_for(next_reply(), seconds(5))
        assert second.id == 2 and second.error.code == 108


async def test_a_browser_preflight_is_answered() -> None:
    with running_gateway(base_config(http_stream=True, allowed_origins=["https://app.example"])) as gw:
        async with (
            aiohttp.ClientSession() as session,
            session.options(f"{gw.http_url}/emulation", headers={"Origin": "https://app.example"}) as response,
        ):
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert "POST" in response.headers["Access-Control-Allow-Methods"]


async def test_a_command_posted_to_another_node_is_passed_on_through_redis() -> None:
    with redis_prefix() as prefix:
        cfg = base_config(engine="redis", redis_address=REDIS_URL, redis_prefix=prefix, http_stream=True)
        with running_gateway(cfg) as a, running_gateway(cfg) as b:
            async with http_stream(a) as (stream, connect):
                cmd_id = 1

                async def routed() -> bool:
                    # B answers 404 until it has heard of A (nodes announce themselves at start).
                    nonlocal cmd_id
                    cmd_id += 1
                    body = command(connect["session"], connect["node"], {"id": cmd_id, "rpc": {"method": "x"}})
                    status = await emulate(b, body)
                    assert status in (204, 404), status
                    return status == 204

                await wait_until(routed, "node B to know node A", within=10)
                assert (await stream.reply(cmd_id))["error"]["code"] == 108  # answered on A's stream
