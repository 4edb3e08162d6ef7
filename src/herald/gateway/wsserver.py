"""WebSocket connections on a bare asyncio protocol, with the ``websockets`` sans-I/O core.

The only module that imports ``websockets``. Why not the web framework's WebSocket support:
an idle connection must cost little memory and a reconnect storm little CPU, and a full HTTP
request/response object graph per socket (kept alive for hours) costs several times what this
does (see docs/benchmarks.md). Here a connection is one small protocol object, the sans-I/O
``ServerProtocol`` that parses the handshake and inbound frames, and the session.

* Inbound: bytes go to ``ServerProtocol``; text/binary frames are handed to the session in
  order (commands that wait on the engine are queued behind each other, never reordered);
  pings, close handshakes and size limits (1009) are the library's.
* Outbound: publications are pre-framed (a server frame is unmasked: a 2-10 byte header) and
  written straight to the transport; the header is built once per payload, however many
  subscribers share it. Nothing awaits: a slow reader only grows its own write buffer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Final

from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from herald.gateway.client import Client
from herald.gateway.node import Node

log = logging.getLogger(__name__)

CLOSE_TIMEOUT: Final = 5.0  # wait this long for the peer's close frame, then drop TCP (spec §1.6)
_JSON_SUBPROTOCOL: Final = Subprotocol("centrifuge-json")
_PONG: Final = b"{}"
# The library logs every refused upgrade at INFO: thousands of lines in a reconnect storm.
_protocol_log = logging.getLogger(__name__ + ".protocol")
_protocol_log.setLevel(logging.WARNING)


def _select_subprotocol(protocol: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """The SDKs send no subprotocol in JSON mode; agree to ``centrifuge-json`` when offered (spec §1.2)."""
    return _JSON_SUBPROTOCOL if _JSON_SUBPROTOCOL in offered else None


def frame_text(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame header for ``payload`` (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n))
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


class _FrameCache:
    """The framed form of the last payload written: a broadcast writes one payload object to
    every subscriber in a row, so it is framed once. Identity, not equality, is compared; the
    cache holds a reference, so the object cannot be replaced by another at the same address."""

    __slots__ = ("frame", "payload")

    def __init__(self) -> None:
        self.payload = b""
        self.frame = b""

    def framed(self, payload: bytes) -> bytes:
        if payload is not self.payload:
            self.payload = payload
            self.frame = frame_text(payload) + payload
        return self.frame


_frames: Final = _FrameCache()

# Decides from the Origin header (and what it knows) whether an upgrade may proceed: None to
# accept, or (HTTP status, message) to refuse.
Admission = Callable[[str | None], tuple[int, str] | None]


class WebSocketConnection(asyncio.Protocol):
    """One client connection after the HTTP upgrade request has been read."""

    __slots__ = ("_app_pings", "_closing", "_fragments", "_inbox", "_node", "_transport", "_ws", "client")

    def __init__(self, node: Node, transport: asyncio.Transport, *, app_pings: bool = True) -> None:
        self._node = node
        self._transport = transport
        self._ws = ServerProtocol(
            select_subprotocol=_select_subprotocol,
            max_size=node.config.websocket_message_size_limit,
            logger=_protocol_log,
        )
        self._app_pings = app_pings
        self._closing = False
        self._fragments: list[bytes] | None = None
        self._inbox: collections.deque[bytes] | None = None  # frames waiting behind a running command
        self.client: Client | None = None

    # --- handshake

    def handshake(self, head: bytes, admit: Admission) -> None:
        """Answer the upgrade request in ``head``: 101 and a session, or an HTTP error and close."""
        ws = self._ws
        try:
            ws.receive_data(head)
        except EOFError:
            self._transport.close()
            return
        events = ws.events_received()
        if not events or not isinstance(events[0], Request):
            self._flush_control()
            self._transport.close()
            return
        request = events[0]
        refusal = admit(request.headers.get("Origin"))
        response = ws.reject(*refusal) if refusal is not None else ws.accept(request)
        ws.send_response(response)
        self._flush_control()
        if ws.state is not State.OPEN:
            self._transport.close()
            return
        self.client = Client(self._node, self, app_pings=self._app_pings)
        if not self._app_pings:
            self._node.timers.call_later(self._node.config.ping_interval, self._native_ping)
        self.data_received(b"")  # frames that came right behind the request head

    # --- asyncio.Protocol

    def data_received(self, data: bytes) -> None:
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
            self._node.timers.call_later(CLOSE_TIMEOUT, self._abort)

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush_control()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self.client is not None:
            self.client.transport_closed()

    # --- inbound messages, in order

    def _deliver(self, message: bytes) -> None:
        client = self.client
        if client is None or self._closing:
            return
        if self._inbox is not None:  # a command is still running: keep the order
            self._inbox.append(message)
            return
        if message == _PONG:
            client.handle_pong()  # the bulk of inbound traffic: no task, no decoding
            return
        self._inbox = collections.deque((message,))
        self._node.spawn(self._drain_inbox(client))

    async def _drain_inbox(self, client: Client) -> None:
        inbox = self._inbox
        assert inbox is not None
        try:
            while inbox and not client.closed:
                await client.handle_frame(inbox.popleft())
        finally:
            self._inbox = None

    # --- client.Connection

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._transport.write(_frames.framed(data))

    def write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        """Send a close frame after whatever is queued; drop TCP if the peer never answers."""
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(InvalidState):  # the peer's close arrived first
            self._ws.send_close(code, reason)
        self._flush_control()
        self._node.timers.call_later(CLOSE_TIMEOUT, self._abort)

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
        self._node.timers.call_later(self._node.config.ping_interval, self._native_ping)
