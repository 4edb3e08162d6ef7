"""Bidirectional emulation over Server-Sent Events (spec §1.8): centrifuge-js's ``sse``.

``GET ?cf_connect=<connect command JSON>`` (what ``EventSource`` can send), or ``POST`` with it
as the body; the response is ``text/event-stream`` with each Reply as one ``data:`` event.
JSON only (an event stream is text). Further commands arrive through the emulation endpoint.
"""

from __future__ import annotations

from collections.abc import Callable

from herald.gateway.codecs.base import Codec
from herald.gateway.codecs.json import JSON
from herald.gateway.session.client import Client
from herald.gateway.transports.emulation import EmulationVariant
from herald.gateway.transports.streaming import Request, StreamConnection


def sse_event(message: bytes) -> bytes:
    # A message is one line of JSON, so it fits one data field.
    return b"data: " + message + b"\n\n"


class SseStream:
    """What the bidirectional and the unidirectional SSE transports share: an EventSource
    opens the stream with a GET (the connect request in ``cf_connect``) or a POST body, and
    every message is one ``data:`` event."""

    methods: tuple[str, ...] = ("GET", "POST")
    preamble = b"\r\n"

    def content_type(self, codec: Codec) -> str:
        return "text/event-stream; charset=utf-8"

    def connect_data(self, request: Request, body: bytes) -> bytes:
        return request.param("cf_connect").encode() if request.method == "GET" else body

    def framer(self, codec: Codec) -> Callable[[bytes], bytes]:
        return sse_event


class Sse(SseStream, EmulationVariant):
    name = "sse"

    def codec(self, request: Request) -> Codec:
        return JSON

    def start(self, stream: StreamConnection, client: Client, data: bytes) -> None:
        client.feed(data)
