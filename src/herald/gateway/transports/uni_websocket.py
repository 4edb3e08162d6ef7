"""Unidirectional WebSocket (spec §1.7): the first text message is a ConnectRequest, then the
server only pushes, each push in its own frame without the Reply wrapper; native WebSocket
pings keep intermediaries from timing the connection out. A disconnect is a ``disconnect``
push followed by a close frame with the same code.
"""

from __future__ import annotations

import asyncio
import uuid

from herald import errors
from herald.gateway.codecs.base import Codec
from herald.gateway.codecs.json import UNI_JSON
from herald.gateway.codecs.messages import DisconnectPush, Push
from herald.gateway.node import Node
from herald.gateway.transports import uni
from herald.gateway.transports.websocket import WebSocketConnection


class UniWebSocketConnection(WebSocketConnection):
    __slots__ = ("_connected",)

    def __init__(self, node: Node, transport: asyncio.Transport, *, app_pings: bool = True) -> None:
        super().__init__(node, transport, app_pings=app_pings)
        self._connected = False  # the connect request has arrived

    def choose_codec(self, subprotocol: str, query: dict[str, list[str]]) -> Codec:
        return UNI_JSON

    def session_id(self) -> str:
        return str(uuid.uuid4())  # the server API can target it (``session``)

    def transport_name(self) -> str:
        return "uni_websocket"

    def _deliver(self, message: bytes) -> None:
        client = self.client
        if client is None or self._closing:
            return
        if self._connected:
            client.disconnect(errors.DISCONNECT_BAD_REQUEST)  # only the connect request is read
            return
        self._connected = True
        uni.connect(client, message)

    def write_batch(self, messages: list[bytes]) -> None:
        for message in messages:  # one push per frame
            self.write(message)

    def close(self, code: int, reason: str, *, linger: bool = True) -> None:
        client = self.client
        if client is not None and not self._closing:
            self.write(client.codec.encode_push(Push(disconnect=DisconnectPush(code, reason))))
        super().close(code, reason, linger=linger)
