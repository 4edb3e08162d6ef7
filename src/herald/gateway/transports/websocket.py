"""WebSocket connections on a bare asyncio protocol, with the ``websockets`` sans-I/O core.

The only module that imports ``websockets``. Why not the web framework's WebSocket support:
an idle connection must cost little memory and a reconnect storm little CPU, and a full HTTP
request/response object graph per socket (kept alive for hours) costs several times what this
does (see docs/benchmarks.md). Here a connection is one small protocol object, the sans-I/O
``ServerProtocol`` that parses inbound frames, and the session.

* Handshake: :func:`parse_upgrade` checks the request (RFC 6455 §4.2.1) and the 101 carries
  the library's accept key; nothing of the request is kept. The encoding is chosen here
  (spec §1.2): Protobuf for the ``centrifuge-protobuf`` subprotocol or ``?format=protobuf`` /
  ``?cf_protocol=protobuf``, JSON otherwise; JSON goes in text frames, Protobuf in binary ones.
* Inbound: bytes go to ``ServerProtocol``; text/binary frames are handed to the session
  (:meth:`Client.feed` keeps them in order); pings, close handshakes and size limits (1009)
  are the library's.
* Outbound: publications are pre-framed (a server frame is unmasked: a 2-10 byte header) and
  written straight to the transport; the header is built once per payload, however many
  subscribers share it. Nothing awaits: a slow reader only grows its own write buffer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Final

from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.utils import accept_key

from herald.gateway.codecs.base import Codec
from herald.gateway.codecs.json import JSON
from herald.gateway.codecs.protobuf import PROTOBUF
from herald.gateway.node import Node
from herald.gateway.proxy import forwarded_headers
from herald.gateway.session.client import Client
from herald.gateway.timers import weakly
from herald.gateway.transports.compression import DeflatedFrameCache, negotiate

log = logging.getLogger(__name__)

CLOSE_TIMEOUT: Final = 5.0  # wait this long for the peer's close frame, then drop TCP (spec §1.6)
_JSON_SUBPROTOCOL: Final = "centrifuge-json"
_PROTOBUF_SUBPROTOCOL: Final = "centrifuge-protobuf"
# Server frames are capped so no SDK's default inbound limit is ever hit by batching.
MAX_FRAME: Final = 65_536
_protocol_log = logging.getLogger(__name__ + ".protocol")
# The library logs every frame at DEBUG, and client frames carry tokens (connect, subscribe,
# refresh, sub_refresh): its logger stays at INFO whatever log_level says.
_protocol_log.setLevel(logging.INFO)
_HTTP_REASONS: Final = {400: "Bad Request", 403: "Forbidden", 426: "Upgrade Required", 503: "Service Unavailable"}


class Upgrade:
    """What an upgrade request asked for, or the problem with it (RFC 6455 §4.2.1)."""

    __slots__ = (
        "extension",
        "extensions",
        "headers",
        "key",
        "origin",
        "problem",
        "subprotocol",
        "version_mismatch",
    )

    def __init__(self) -> None:
        self.key = ""
        self.origin: str | None = None
        self.subprotocol = ""
        self.extensions = ""  # what the client offers in Sec-WebSocket-Extensions
        self.extension = ""  # what the server agreed to (permessage-deflate), for the 101
        self.problem: tuple[int, str] | None = None
        self.version_mismatch = False
        self.headers: dict[str, str] = {}  # names lowercased; the proxy forwards some (proxy.md §2)

    def response(self) -> bytes:
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept_key(self.key)}",
        ]
        if self.subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {self.subprotocol}")
        if self.extension:
            lines.append(f"Sec-WebSocket-Extensions: {self.extension}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_upgrade(head: bytes) -> Upgrade:
    """Check a WebSocket upgrade request head (request line and headers, ending with a blank line).

    Done here rather than by the library's handshake because it runs for every connection of
    a reconnect storm and its result is all that must stay in memory: the key checks are the
    RFC's, the accept key is the library's.
    """
    upgrade = Upgrade()
    try:
        lines = head.decode("latin-1").split("\r\n")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        lines = [""]
    request_line = lines[0].split(" ")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            upgrade.problem = (400, "malformed header line")
            return upgrade
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if len(request_line) != 3 or request_line[0] != "GET" or request_line[2] != "HTTP/1.1":
        upgrade.problem = (400, "a WebSocket upgrade is a GET over HTTP/1.1")
    elif "upgrade" not in _tokens(headers.get("connection", "")):
        upgrade.problem = (400, "missing 'upgrade' in the Connection header")
    elif _tokens(headers.get("upgrade", "")) != ["websocket"]:
        upgrade.problem = (400, "the Upgrade header must be 'websocket'")
    elif headers.get("sec-websocket-version") != "13":
        upgrade.problem = (426, "only WebSocket version 13 is supported")
        upgrade.version_mismatch = True
    elif not _valid_key(headers.get("sec-websocket-key", "")):
        upgrade.problem = (400, "missing or invalid Sec-WebSocket-Key")
    upgrade.headers = headers
    upgrade.key = headers.get("sec-websocket-key", "")
    upgrade.origin = headers.get("origin")
    upgrade.extensions = headers.get("sec-websocket-extensions", "")
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    if _PROTOBUF_SUBPROTOCOL in offered:
        upgrade.subprotocol = _PROTOBUF_SUBPROTOCOL
    elif _JSON_SUBPROTOCOL in offered:
        upgrade.subprotocol = _JSON_SUBPROTOCOL  # the SDKs send none in JSON mode (spec §1.2)
    return upgrade


def codec_for(subprotocol: str, query: dict[str, list[str]]) -> Codec:
    """The connection's encoding (spec §1.2): the subprotocol, else the query, else JSON."""
    if subprotocol == _PROTOBUF_SUBPROTOCOL:
        return PROTOBUF
    if "protobuf" in (query.get("format", [""])[0], query.get("cf_protocol", [""])[0]):
        return PROTOBUF
    return JSON


def http_error(status: int, message: str, *, version_hint: bool = False) -> bytes:
    body = message.encode()
    extra = "Sec-WebSocket-Version: 13\r\n" if version_hint else ""
    return (
        f"HTTP/1.1 {status} {_HTTP_REASONS.get(status, 'Error')}\r\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def _tokens(value: str) -> list[str]:
    return [token.strip().lower() for token in value.split(",") if token.strip()]


def _valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.encode(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def frame_text(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame header for ``payload`` (RFC 6455 §5.2)."""
    return frame_header(0x81, len(payload))


def frame_header(first: int, n: int) -> bytes:
    """An unmasked frame header: ``first`` = FIN and opcode (0x81 text, 0x82 binary)."""
    if n < 126:
        return bytes((first, n))
    if n < 65536:
        return bytes((first, 0x7E)) + n.to_bytes(2, "big")
    return bytes((first, 0x7F)) + n.to_bytes(8, "big")


@functools.lru_cache(maxsize=64)
def close_frame(code: int, reason: str) -> bytes | None:
    """An unmasked close frame (RFC 6455 §5.5.1), or None when the reason does not fit one.
    Codes and reasons come from a short fixed list, so each frame is built once."""
    payload = code.to_bytes(2, "big") + reason.encode()
    return bytes((0x88, len(payload))) + payload if len(payload) <= 125 else None


class _FrameCache:
    """The framed form of the last payload written: a broadcast writes one payload object to
    every subscriber in a row, so it is framed once. Identity, not equality, is compared; the
    cache holds a reference, so the object cannot be replaced by another at the same address."""

    __slots__ = ("first", "frame", "payload")

    def __init__(self, first: int) -> None:
        self.first = first
        self.payload = b""
        self.frame = b""

    def framed(self, payload: bytes) -> bytes:
        if payload is not self.payload:
            self.payload = payload
            self.frame = frame_header(self.first, len(payload)) + payload
        return self.frame

    def frame_of(self, payload: bytes) -> bytes:
        return frame_header(self.first, len(payload)) + payload


# One cache per frame type: a broadcast writes one payload per encoding to its subscribers.
_text_frames: Final = _FrameCache(0x81)
_binary_frames: Final = _FrameCache(0x82)
_deflated_frames: dict[tuple[int, int, int], DeflatedFrameCache] = {}


def _deflated(opcode: int, level: int, min_size: int) -> DeflatedFrameCache:
    key = (opcode, level, min_size)
    cache = _deflated_frames.get(key)
    if cache is None:
        cache = _deflated_frames[key] = DeflatedFrameCache(opcode, level, min_size)
    return cache


# Decides from the Origin header (and what it knows) whether an upgrade may proceed: None to
# accept, or (HTTP status, message) to refuse.
Admission = Callable[[str | None], tuple[int, str] | None]


class WebSocketConnection(asyncio.Protocol):
    """One client connection after the HTTP upgrade request has been read."""

    # Timers hold a connection weakly (timers.weakly): the transport keeps it alive while open.
    __slots__ = (
        "__weakref__",
        "_app_pings",
        "_closing",
        "_codec",
        "_fragments",
        "_frames",
        "_node",
        "_transport",
        "_ws",
        "client",
    )

    def __init__(self, node: Node, transport: asyncio.Transport, *, app_pings: bool = True) -> None:
        self._node = node
        self._transport = transport
        # The handshake is answered by parse_upgrade(); the library parses frames from then on.
        self._ws = ServerProtocol(
            state=State.OPEN, max_size=node.config.websocket_message_size_limit, logger=_protocol_log
        )
        self._app_pings = app_pings
        self._closing = False
        self._fragments: list[bytes] | None = None
        self._codec: Codec = JSON
        self._frames: _FrameCache | DeflatedFrameCache = _text_frames
        self.client: Client | None = None

    # --- handshake

    def handshake(self, head: bytes, admit: Admission, query: dict[str, list[str]] | None = None) -> None:
        """Answer the upgrade request in ``head``: 101 and a session, or an HTTP error and close."""
        transport = self._transport
        end = head.find(b"\r\n\r\n") + 4
        upgrade = parse_upgrade(head[:end])
        refusal = upgrade.problem or admit(upgrade.origin)
        if refusal is not None:
            transport.write(http_error(*refusal, version_hint=upgrade.version_mismatch))
            transport.close()
            return
        self._codec = self.choose_codec(upgrade.subprotocol, query or {})
        self._frames = _binary_frames if self._codec.binary else _text_frames
        cfg = self._node.config
        if cfg.websocket_compression and upgrade.extensions:
            agreed = negotiate(upgrade.extensions)
            if agreed is not None:
                upgrade.extension, extension = agreed
                self._ws.extensions = [extension]  # the library inflates what the client sends
                opcode = 0x2 if self._codec.binary else 0x1
                self._frames = _deflated(opcode, cfg.websocket_compression_level, cfg.websocket_compression_min_size)
        transport.write(upgrade.response())
        self._node.websocket_opened()
        self.client = Client(
            self._node,
            self,
            self._codec,
            app_pings=self._app_pings,
            session=self.session_id(),
            transport=self.transport_name(),
            headers=forwarded_headers(self._node.proxy, upgrade.headers),
        )
        if not self._app_pings:
            ping = weakly(self, WebSocketConnection._native_ping)
            self._node.timers.call_later(self._node.config.ping_interval, ping)
        if len(head) > end:  # frames that came right behind the request head
            self.data_received(head[end:])

    # --- asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self._closing and self._transport.is_closing():
            return  # closed without waiting for the peer: its answer needs no reply
        ws = self._ws
        try:
            ws.receive_data(data)
        except EOFError:
            return
        for frame in ws.events_received():
            if not isinstance(frame, Frame):
                continue
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:
                    self._deliver(bytes(frame.data))
                else:
                    self._fragments = [bytes(frame.data)]
            elif opcode is Opcode.CONT and self._fragments is not None:
                self._fragments.append(bytes(frame.data))
                if frame.fin:
                    message, self._fragments = b"".join(self._fragments), None
                    self._deliver(message)
        self._flush_control()
        if ws.close_expected() and not self._closing:
            # The peer started the close handshake (or broke the protocol): the library answered.
            self._closing = True
            self._node.timers.call_later(CLOSE_TIMEOUT, weakly(self, WebSocketConnection._abort))

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush_control()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self.client is not None:
            self._node.websocket_closed()
            self.client.transport_closed()

    # --- inbound messages, in order

    def _deliver(self, message: bytes) -> None:
        client = self.client
        if client is not None and not self._closing:
            client.feed(message)

    # --- what a variant of this transport decides (see uni_websocket.py)

    def choose_codec(self, subprotocol: str, query: dict[str, list[str]]) -> Codec:
        return codec_for(subprotocol, query)

    def session_id(self) -> str:
        return ""  # a bidirectional WebSocket needs no session id

    def transport_name(self) -> str:
        return "websocket"  # as proxy requests name it (proxy.md §2)

    # --- client.Connection

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._transport.write(self._frames.framed(data))

    def write_batch(self, messages: list[bytes]) -> None:
        """Queued messages in as few frames as fit under MAX_FRAME (spec §1.3: several per frame)."""
        if self._closing:
            return
        separator = self._codec.separator
        frame_of = self._frames.frame_of
        frames: list[bytes] = []
        batch: list[bytes] = []
        size = 0
        for message in messages:
            if batch and size + len(message) > MAX_FRAME:
                frames.append(frame_of(separator.join(batch)))
                batch, size = [], 0
            batch.append(message)
            size += len(message) + len(separator)
        frames.append(frame_of(separator.join(batch)))
        self._transport.write(b"".join(frames))

    def write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def close(self, code: int, reason: str, *, linger: bool = True) -> None:
        """Send a close frame after whatever is queued. With ``linger``, wait for the peer's close
        frame (dropping TCP if it never comes); without, close TCP once the frame is written."""
        if self._closing:
            return
        self._closing = True
        frame = None if linger else close_frame(code, reason)
        if frame is not None:
            # Not waiting for the peer's answer, so the library's close-handshake state is not
            # needed: write the prebuilt frame (a reconnect storm closes thousands at once).
            self._transport.write(frame)
        else:
            with contextlib.suppress(InvalidState):  # the peer's close arrived first
                self._ws.send_close(code, reason)
            self._flush_control()
        if not linger:
            self._transport.close()  # flushes the queued bytes and the close frame first
        self._node.timers.call_later(CLOSE_TIMEOUT, weakly(self, WebSocketConnection._abort))  # a peer that never reads

    # --- helpers

    def _flush_control(self) -> None:
        """Write what the library produced (handshake, pongs, close frames); b"" means end."""
        transport = self._transport
        for chunk in self._ws.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                transport.close()  # flushes what is buffered, then closes

    def _abort(self) -> None:
        """The close handshake did not finish in time (or a slow reader never drained)."""
        if not self._transport.is_closing() or self._transport.get_write_buffer_size():
            self._transport.abort()

    def _native_ping(self) -> None:
        """``cf_ws_frame_ping_pong=true``: WebSocket ping frames instead of app-level pings."""
        if self._closing:
            return
        try:
            self._ws.send_ping(b"")
        except InvalidState:
            return
        self._flush_control()
        self._node.timers.call_later(self._node.config.ping_interval, weakly(self, WebSocketConnection._native_ping))
