"""Bidirectional emulation over HTTP streaming (spec §1.8): centrifuge-js's ``http_stream``.

``POST`` with the connect command frame as the body (``application/json``, or
``application/octet-stream`` for Protobuf); the response streams Replies: JSON ones each
followed by a newline, Protobuf ones length-prefixed as on WebSocket. Further commands arrive
through the emulation endpoint (``emulation.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from herald.gateway.codecs.base import Codec
from herald.gateway.codecs.json import JSON
from herald.gateway.codecs.protobuf import PROTOBUF
from herald.gateway.session.client import Client
from herald.gateway.transports.emulation import EmulationVariant
from herald.gateway.transports.streaming import Request, StreamConnection


class HttpStream(EmulationVariant):
    name = "http_stream"
    methods = ("POST",)

    def codec(self, request: Request) -> Codec:
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        return PROTOBUF if content_type == "application/octet-stream" else JSON

    def framer(self, codec: Codec) -> Callable[[bytes], bytes]:
        return as_is if codec.binary else line

    def start(self, stream: StreamConnection, client: Client, data: bytes) -> None:
        client.feed(data)


def line(message: bytes) -> bytes:
    return message + b"\n"


def as_is(message: bytes) -> bytes:
    return message  # Protobuf messages carry their own length
