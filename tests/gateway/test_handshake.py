"""The WebSocket upgrade on the gateway's port: what is accepted and how each bad request is refused."""

from __future__ import annotations

import socket

import pytest
from centrifuge.protocol import client_pb2
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from herald.gateway.transports.websocket import close_frame, parse_upgrade
from tests.support.gateway import GatewayProcess
from tests.support.tokens import token

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # the example of RFC 6455 §1.3


def request(path: str = "/connection/websocket", **headers: str) -> bytes:
    base = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in base.items() if v)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(gw: GatewayProcess, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def test_a_valid_upgrade_gets_101_with_the_accept_key(gateway: GatewayProcess) -> None:
    head = exchange(gateway, request())
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head  # the RFC's answer to KEY
    assert b"Sec-WebSocket-Protocol" not in head  # the SDKs send none in JSON mode


def test_the_json_subprotocol_is_agreed_when_offered(gateway: GatewayProcess) -> None:
    head = exchange(gateway, request(Sec_WebSocket_Protocol="centrifuge-json"))
    assert head.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Protocol: centrifuge-json" in head


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Upgrade": ""}, b"400"),
        ({"Upgrade": "h2c"}, b"400"),
        ({"Connection": "keep-alive"}, b"400"),
        ({"Sec_WebSocket_Key": ""}, b"400"),
        ({"Sec_WebSocket_Key": "too-short"}, b"400"),
        ({"Sec_WebSocket_Version": "8"}, b"426"),
    ],
)
def test_bad_upgrades_are_refused_with_a_status(
    gateway: GatewayProcess, headers: dict[str, str], status: bytes
) -> None:
    head = exchange(gateway, request(**headers))
    assert head.startswith(b"HTTP/1.1 " + status), head
    if status == b"426":
        assert b"Sec-WebSocket-Version: 13" in head


def test_the_protobuf_subprotocol_is_agreed_when_offered(gateway: GatewayProcess) -> None:
    # The JSON one is offered too: Protobuf wins when both are (the SDKs offer only one).
    head = exchange(gateway, request(Sec_WebSocket_Protocol="centrifuge-json, centrifuge-protobuf"))
    assert head.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Protocol: centrifuge-protobuf" in head


@pytest.mark.parametrize("query", ["format=protobuf", "cf_protocol=protobuf"])
def test_protobuf_chosen_in_the_query_answers_in_binary_frames(gateway: GatewayProcess, query: str) -> None:
    """Commands encoded with the official SDK's own schema get a Protobuf reply (spec §1.2)."""
    command = client_pb2.Command(id=1)
    command.connect.token = token()
    body = command.SerializeToString()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(request(f"/connection/websocket?{query}"))
        reader = StreamReader()
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Protocol" not in head
        reader.feed_data(head[head.index(b"\r\n\r\n") + 4 :])
        sock.sendall(client_frame(Opcode.BINARY, varint(len(body)) + body))
        frame = read_frame(sock, reader)
        assert frame.opcode is Opcode.BINARY
        length, start = read_varint(frame.data)
        assert start + length == len(frame.data)  # one length-prefixed Reply
        reply = client_pb2.Reply.FromString(frame.data[start:])
        assert reply.id == 1 and reply.connect.client and reply.connect.ping == 25 and reply.connect.pong


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(out) + bytes((n,))


def read_varint(data: bytes) -> tuple[int, int]:
    """(value, bytes used) of the varint at the start of ``data``."""
    value = 0
    for i, byte in enumerate(data):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, i + 1
    raise AssertionError("truncated varint")


def client_frame(opcode: Opcode, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    size = bytes((0x80 | len(payload),)) if len(payload) < 126 else bytes((0xFE,)) + len(payload).to_bytes(2, "big")
    return bytes((0x80 | opcode.value,)) + size + mask + masked


def read_frame(sock: socket.socket, reader: StreamReader) -> Frame:
    parser = Frame.parse(reader.read_exact, mask=False)
    while True:
        try:
            next(parser)
        except StopIteration as done:
            frame: Frame = done.value
            return frame
        data = sock.recv(4096)
        if not data:
            raise AssertionError("the connection closed before a frame arrived")
        reader.feed_data(data)


def test_other_paths_still_reach_the_http_server(gateway: GatewayProcess) -> None:
    assert exchange(gateway, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")
    assert exchange(gateway, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404")


def test_an_oversized_request_head_is_refused(gateway: GatewayProcess) -> None:
    big = b"GET /connection/websocket HTTP/1.1\r\nX-Pad: " + b"a" * 20_000
    assert exchange(gateway, big).startswith(b"HTTP/1.1 431")


def test_parse_upgrade_reads_what_it_needs() -> None:
    upgrade = parse_upgrade(request(Origin="https://app.example.com", Sec_WebSocket_Protocol="x, centrifuge-json"))
    assert upgrade.problem is None and upgrade.origin == "https://app.example.com"
    assert upgrade.subprotocol == "centrifuge-json" and upgrade.key == KEY
    assert parse_upgrade(b"POST / HTTP/1.1\r\n\r\n").problem is not None
    assert parse_upgrade(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").problem == (400, "malformed header line")


@pytest.mark.parametrize(("code", "reason"), [(3001, "shutdown"), (3100, "benchmark"), (1000, "")])
def test_prebuilt_close_frames_parse_as_the_close_they_stand_for(code: int, reason: str) -> None:
    frame = close_frame(code, reason)
    assert frame is not None
    reader = StreamReader()
    reader.feed_data(frame)
    parser = Frame.parse(reader.read_exact, mask=False)
    with pytest.raises(StopIteration) as done:
        next(parser)
    parsed = done.value.value
    assert parsed.opcode is Opcode.CLOSE and parsed.fin
    assert Close.parse(parsed.data) == Close(code, reason)


def test_a_close_reason_too_long_for_one_frame_is_left_to_the_library() -> None:
    assert close_frame(3000, "x" * 124) is None
