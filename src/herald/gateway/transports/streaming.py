"""What every HTTP streaming transport shares: read one request, answer with an endless chunked
response, write each message the variant's way (spec §1.7, §1.8).

Like WebSocket connections, streams are taken off the port before the web framework sees them
(``http.PortProtocol``): a stream lives for hours, and all it needs is the asyncio transport,
this small protocol object and its session. The request body (a connect command or request)
must come with a ``Content-Length`` (411 otherwise) of at most
``emulation_max_request_body_size`` bytes (413).

A variant (``http_stream.py``, ``sse.py``, ``uni_http_stream.py``, ``uni_sse.py``) says which
methods it takes, which encoding, how one message is framed on the stream, and what to do with
the request's connect data once the response has started. The session ends the stream with a
``disconnect`` push, then the last chunk; the peer going away ends the session.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs

from herald.gateway.codecs.base import Codec
from herald.gateway.codecs.messages import DisconnectPush, Push
from herald.gateway.node import Node
from herald.gateway.proxy import forwarded_headers
from herald.gateway.session.client import Client

log = logging.getLogger(__name__)

_REASONS: Final = {
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    503: "Service Unavailable",
}
NO_CACHE: Final = "private, no-cache, no-store, must-revalidate, max-age=0"


@dataclass(slots=True)
class Request:
    """The parts of a request head a transport looks at."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str] = field(default_factory=dict)

    def param(self, name: str) -> str:
        return self.query.get(name, [""])[0]


def parse_head(head: bytes) -> Request | None:
    """Request line and headers (names lower-cased); None for a malformed head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    path, _, query = parts[1].partition("?")
    request = Request(parts[0], path, parse_qs(query) if query else {})
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        name = name.lower()
        value = value.strip()
        request.headers[name] = f"{request.headers[name]}, {value}" if name in request.headers else value
    return request


def http_response(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def cors_headers(origin: str | None) -> dict[str, str]:
    """A browser page on another origin (already allowed by ``allowed_origins``) may read the stream."""
    if origin is None:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _ChunkCache:
    """The chunk of the last message written with one framing: a broadcast writes one message
    object to every subscriber in a row, so it is framed once (as WebSocket's frame cache)."""

    __slots__ = ("chunk", "frame", "message")

    def __init__(self, frame: Callable[[bytes], bytes]) -> None:
        self.frame = frame
        self.message = b""
        self.chunk = _chunk(frame(b""))

    def chunked(self, message: bytes) -> bytes:
        if message is not self.message:
            self.message = message
            self.chunk = _chunk(self.frame(message))
        return self.chunk


_caches: dict[Callable[[bytes], bytes], _ChunkCache] = {}


def _cache_for(frame: Callable[[bytes], bytes]) -> _ChunkCache:
    cache = _caches.get(frame)
    if cache is None:
        cache = _caches[frame] = _ChunkCache(frame)
    return cache


# (origin, query) -> None to accept, or (HTTP status, message) to refuse (see http.HttpServer.admit)
Admission = Callable[[str | None, dict[str, list[str]]], tuple[int, str] | None]


class StreamVariant:
    """One streaming transport: subclasses set the class attributes and override the hooks."""

    name: str = ""
    methods: tuple[str, ...] = ("POST",)
    # Bytes written right after the response head (SSE: a blank line some proxies need to see).
    preamble: bytes = b""

    def codec(self, request: Request) -> Codec:
        raise NotImplementedError

    def content_type(self, codec: Codec) -> str:
        return "application/octet-stream" if codec.binary else "application/json"

    def connect_data(self, request: Request, body: bytes) -> bytes:
        """The connect command frame or request of the request (query or body)."""
        return body

    def framer(self, codec: Codec) -> Callable[[bytes], bytes]:
        """How one message is carried on the stream: a module-level function (frames are cached by it)."""
        raise NotImplementedError

    def start(self, stream: StreamConnection, client: Client, data: bytes) -> None:
        """The response has started: hand the connect data to the session."""
        raise NotImplementedError

    def session_id(self) -> str:
        return str(uuid.uuid4())

    def opened(self, client: Client) -> None:
        """A session started (emulation registers it for its commands)."""

    def closed(self, client: Client) -> None: ...


class StreamConnection(asyncio.Protocol):
    """One streaming client connection after its request head was read."""

    __slots__ = (
        "_body",
        "_cache",
        "_closing",
        "_frame",
        "_node",
        "_request",
        "_transport",
        "_variant",
        "_wanted",
        "client",
    )

    def __init__(self, node: Node, transport: asyncio.Transport, variant: StreamVariant) -> None:
        self._node = node
        self._transport = transport
        self._variant = variant
        self._request: Request | None = None
        self._body = bytearray()
        self._wanted = 0
        self._closing = False
        self._frame: Callable[[bytes], bytes] = bytes
        self._cache: _ChunkCache | None = None
        self.client: Client | None = None

    def begin(self, request: Request, rest: bytes, admit: Admission) -> None:
        """Check the request; then read its body (if any) and start the stream."""
        origin = request.headers.get("origin")
        if request.method == "OPTIONS":  # a browser's CORS preflight
            self._refuse(204, "", origin, preflight=True)
            return
        if request.method not in self._variant.methods:
            self._refuse(405, f"use {' or '.join(self._variant.methods)}", origin)
            return
        refusal = admit(origin, request.query)
        if refusal is not None:
            self._refuse(*refusal, origin)
            return
        if request.method == "POST":
            if "chunked" in request.headers.get("transfer-encoding", "").lower():
                self._refuse(411, "send the request body with a Content-Length", origin)
                return
            try:
                self._wanted = int(request.headers.get("content-length", "0"))
            except ValueError:
                self._refuse(400, "invalid Content-Length", origin)
                return
            if self._wanted > self._node.config.emulation_max_request_body_size:
                self._refuse(413, "request body too large", origin)
                return
        self._request = request
        self.data_received(rest)

    def _refuse(self, status: int, message: str, origin: str | None, *, preflight: bool = False) -> None:
        headers = cors_headers(origin)
        if preflight:
            headers["Access-Control-Allow-Methods"] = ", ".join((*self._variant.methods, "OPTIONS"))
            headers["Access-Control-Allow-Headers"] = "Content-Type"
        self._transport.write(http_response(status, message.encode(), headers))
        self._transport.close()

    # --- asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        request = self._request
        if request is None or self.client is not None:
            return  # nothing more is read from a streaming client
        self._body += data
        if len(self._body) < self._wanted:
            return
        body = bytes(self._body[: self._wanted])
        self._body = bytearray()
        self._start(request, body)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        client = self.client
        if client is not None:
            self._variant.closed(client)
            self._node.websocket_closed()
            client.transport_closed()

    # --- the stream

    def _start(self, request: Request, body: bytes) -> None:
        variant = self._variant
        data = variant.connect_data(request, body)
        codec = variant.codec(request)
        self._frame = variant.framer(codec)
        self._cache = _cache_for(self._frame)
        headers = {
            "Content-Type": variant.content_type(codec),
            "Cache-Control": NO_CACHE,
            "Pragma": "no-cache",
            "Expires": "0",
            "X-Accel-Buffering": "no",  # proxies must not buffer the stream (spec §1.8)
            "Transfer-Encoding": "chunked",
            **cors_headers(request.headers.get("origin")),
        }
        head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self._transport.write(head.encode() + (_chunk(variant.preamble) if variant.preamble else b""))
        self._node.websocket_opened()
        client = self.client = Client(
            self._node,
            self,
            codec,
            session=variant.session_id(),
            transport=variant.name,
            headers=forwarded_headers(self._node.proxy, request.headers),
        )
        variant.opened(client)
        variant.start(self, client, data)

    # --- client.Connection

    def write(self, data: bytes) -> None:
        if not self._closing:
            assert self._cache is not None
            self._transport.write(self._cache.chunked(data))

    def write_batch(self, messages: list[bytes]) -> None:
        if not self._closing:
            frame = self._frame
            self._transport.write(_chunk(b"".join(frame(message) for message in messages)))

    def write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def close(self, code: int, reason: str, *, linger: bool = True) -> None:
        """A stream has no close frame: the disconnect push says why (spec §1.7, §1.8), then it ends."""
        if self._closing:
            return
        client = self.client
        if client is not None:
            push = client.codec.encode_push(Push(disconnect=DisconnectPush(code, reason)))
            self._transport.write(_chunk(self._frame(push)))
        self._closing = True
        self._transport.write(b"0\r\n\r\n")
        self._transport.close()
