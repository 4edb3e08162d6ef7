"""The floor: the thinnest WebSocket broadcast server Python can run.

No protocol, no auth, no subscriptions, no pings: it accepts the upgrade, keeps the sockets
and writes one pre-framed copy of whatever is posted to ``/broadcast`` to every socket. What
Herald spends beyond this per delivery is the price of its protocol.

    python -m bench.thin_server --port 9000

Endpoints: ``GET /ws`` (upgrade), ``POST /broadcast`` (body = text payload),
``POST /close`` (close every WebSocket with 1012), ``GET /health``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import signal
from typing import Final, cast

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
_CLOSE_FRAME: Final = b"\x88\x02" + (1012).to_bytes(2, "big")


def frame_text(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def response(status: str, body: bytes = b"") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\n\r\n".encode() + body


class Server:
    def __init__(self) -> None:
        self.sockets: set[asyncio.Transport] = set()

    def broadcast(self, payload: bytes) -> int:
        frame = frame_text(payload)
        for transport in self.sockets:
            transport.write(frame)
        return len(self.sockets)

    def close_all(self) -> int:
        sockets, self.sockets = self.sockets, set()
        for transport in sockets:
            transport.write(_CLOSE_FRAME)
            transport.close()
        return len(sockets)


class Connection(asyncio.Protocol):
    __slots__ = ("buf", "server", "transport", "ws")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.ws = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ws and self.transport is not None:
            self.server.sockets.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.ws:
            if len(data) >= 2 and data[0] & 0x0F == 8 and self.transport is not None:
                self.transport.close()  # the client's close frame: no protocol, just go
            return
        self.buf += data
        while not self.ws:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            method, path = head[0].split(" ")[:2]
            self._request(method, path, headers, body)

    def _request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if method == "GET" and headers.get("upgrade", "").lower() == "websocket":
            accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest())
            transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.ws = True
            self.server.sockets.add(transport)
        elif method == "POST" and path == "/broadcast":
            transport.write(response("200 OK", str(self.server.broadcast(body)).encode()))
        elif method == "POST" and path == "/close":
            transport.write(response("200 OK", str(self.server.close_all()).encode()))
        elif path == "/health":
            transport.write(response("200 OK", b"{}"))
        else:
            transport.write(response("404 Not Found"))


async def serve(host: str, port: int) -> None:
    server = Server()
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Connection(server), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
