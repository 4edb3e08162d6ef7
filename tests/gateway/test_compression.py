"""WebSocket permessage-deflate (``websocket_compression``): negotiated when offered, frames
really compressed, and the official SDKs (which offer it) work over it in both encodings."""

from __future__ import annotations

import asyncio
import json
import socket
import zlib
from collections.abc import AsyncIterator, Iterator

import pytest
from centrifuge import Client

from tests.gateway.test_handshake import client_frame, request
from tests.support.api import publish
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.jsclient import JsDriver, on
from tests.support.pyclient import PROTOCOLS, Recorder, close_client
from tests.support.tokens import token

BIG = {"rows": [{"id": i, "state": "paid", "note": "compressible " * 4} for i in range(40)]}


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    with running_gateway(base_config(websocket_compression=True, websocket_compression_min_size=64)) as gw:
        yield gw


@pytest.fixture
async def js(gateway: GatewayProcess) -> AsyncIterator[JsDriver]:
    async with JsDriver() as driver:
        driver.add_diagnostics("gateway log", gateway.log)
        yield driver


def handshake(port: int, offer: str) -> tuple[socket.socket, bytes, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(request(Sec_WebSocket_Extensions=offer))
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    return sock, head, rest


def read_frames(sock: socket.socket, buffer: bytes, count: int) -> list[tuple[int, bytes]]:
    """``count`` server frames as (first byte, payload)."""
    frames = []
    while len(frames) < count:
        if len(buffer) >= 2:
            size, start = buffer[1] & 0x7F, 2
            if size == 126:
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            if len(buffer) >= start + size:
                frames.append((buffer[0], buffer[start : start + size]))
                buffer = buffer[start + size :]
                continue
        chunk = sock.recv(65536)
        assert chunk, "the connection closed"
        buffer += chunk
    return frames


def test_negotiated_when_offered_and_broadcasts_are_compressed(gateway: GatewayProcess) -> None:
    sock, head, rest = handshake(gateway.port, "permessage-deflate; client_max_window_bits")
    with sock:
        assert b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover" in head
        connect = json.dumps({"id": 1, "connect": {"token": token()}}).encode() + b"\n"
        connect += json.dumps({"id": 2, "subscribe": {"channel": "tenant_42"}}).encode()
        sock.sendall(client_frame_uncompressed(connect))
        read_frames(sock, rest, 1)  # the connect and subscribe replies (one frame, small: not compressed)
        publish(gateway.api_url, "tenant_42", BIG)
        ((first, payload),) = read_frames(sock, b"", 1)
        assert first & 0x40, "RSV1: a compressed message"
        text = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        assert json.loads(text) == {"push": {"channel": "tenant_42", "pub": {"data": BIG}}}
        assert len(payload) < len(text) / 3


def client_frame_uncompressed(payload: bytes) -> bytes:
    from websockets.frames import Opcode

    return client_frame(Opcode.TEXT, payload)


def test_not_negotiated_when_off_or_not_offered(gateway: GatewayProcess) -> None:
    sock, head, _ = handshake(gateway.port, "")
    sock.close()
    assert b"Sec-WebSocket-Extensions" not in head
    with running_gateway(base_config()) as plain:
        sock, head, _ = handshake(plain.port, "permessage-deflate")
        sock.close()
        assert b"Sec-WebSocket-Extensions" not in head


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_centrifuge_python_over_a_compressed_connection(gateway: GatewayProcess, protocol: str) -> None:
    recorder = Recorder()
    client = Client(
        gateway.ws_url, token=token(), events=recorder.client_handler(), use_protobuf=protocol == "protobuf"
    )
    sub = client.new_subscription("tenant_42", events=recorder.sub_handler("tenant_42"))
    try:
        await client.connect()
        await sub.subscribe()
        await recorder.wait_for("sub:subscribed", "tenant_42")
        await asyncio.to_thread(publish, gateway.api_url, "tenant_42", BIG)
        assert (await recorder.wait_for("sub:publication", "tenant_42")).ctx.pub.data == BIG
        extensions = client._conn.protocol.extensions  # type: ignore[union-attr]  # the SDK's websockets connection
        assert [ext.name for ext in extensions] == ["permessage-deflate"]
    finally:
        await close_client(client)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_centrifuge_js_over_a_compressed_connection(gateway: GatewayProcess, js: JsDriver, protocol: str) -> None:
    await js.call(
        {
            "op": "client",
            "id": "c",
            "url": gateway.ws_url,
            "token": token(),
            "connect": True,
            "protobuf": protocol == "protobuf",
        }
    )
    await js.wait_for(on("c", "connected", channel=None))
    await js.call({"op": "subscribe", "client": "c", "channel": "tenant_42"})
    await js.wait_for(on("c", "subscribed", source="sub", channel="tenant_42"))
    await asyncio.to_thread(publish, gateway.api_url, "tenant_42", BIG)
    await js.wait_for(on("c", "publication", source="sub", channel="tenant_42", data=BIG))
