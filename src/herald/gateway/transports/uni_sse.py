"""Unidirectional SSE (spec §1.7): an ``EventSource`` in a page, no SDK.

``GET ?cf_connect=<ConnectRequest JSON>`` (or ``POST`` with it as the body); each push is one
``data:`` event, without the Reply wrapper.
"""

from __future__ import annotations

from herald.gateway.codecs.base import Codec
from herald.gateway.codecs.json import UNI_JSON
from herald.gateway.session.client import Client
from herald.gateway.transports import uni
from herald.gateway.transports.sse import SseStream
from herald.gateway.transports.streaming import Request, StreamConnection, StreamVariant


class UniSse(SseStream, StreamVariant):
    name = "uni_sse"

    def codec(self, request: Request) -> Codec:
        return UNI_JSON

    def start(self, stream: StreamConnection, client: Client, data: bytes) -> None:
        uni.connect(client, data)
