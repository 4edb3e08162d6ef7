"""Unidirectional SSE (spec §1.7): an ``EventSource`` in a page, no SDK.

``GET ?cf_connect=<ConnectRequest JSON>`` (or ``POST`` with it as the body); each push is one
``data:`` event, without the Reply wrapper.
"""

from __future__ import annotations

from collections.abc import Callable

from herald.gateway.codecs.base import Codec
from herald.gateway.codecs.json import UNI_JSON
from herald.gateway.session.client import Client
from herald.gateway.transports import uni
from herald.gateway.transports.sse import sse_event
from herald.gateway.transports.streaming import Request, StreamConnection, StreamVariant


class UniSse(StreamVariant):
    name = "uni_sse"
    methods = ("GET", "POST")
    preamble = b"\r\n"

    def codec(self, request: Request) -> Codec:
        return UNI_JSON

    def content_type(self, codec: Codec) -> str:
        return "text/event-stream; charset=utf-8"

    def connect_data(self, request: Request, body: bytes) -> bytes:
        return request.param("cf_connect").encode() if request.method == "GET" else body

    def framer(self, codec: Codec) -> Callable[[bytes], bytes]:
        return sse_event

    def start(self, stream: StreamConnection, client: Client, data: bytes) -> None:
        uni.connect(client, data)
