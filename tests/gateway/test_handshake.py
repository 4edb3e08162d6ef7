"""The WebSocket upgrade on the gateway's port: what is accepted and how each bad request is refused."""

from __future__ import annotations

import socket

import pytest
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from herald.gateway.transports.websocket import close_frame, parse_upgrade
from tests.support.gateway import GatewayProcess

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


def test_protobuf_is_refused_with_400(gateway: GatewayProcess) -> None:
    assert exchange(gateway, request("/connection/websocket?format=protobuf")).startswith(b"HTTP/1.1 400")


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
