"""Unidirectional HTTP streaming (spec §1.7): ``POST`` a ConnectRequest JSON, read pushes.

For clients without an SDK (``curl -N -d '{"token":"..."}' .../connection/uni_http_stream``):
each push is a JSON object on its own line, without the Reply wrapper; ``{}`` is a ping.
"""

from __future__ import annotations

from collections.abc import Callable

from herald.gateway.codecs.base import Codec
from herald.gateway.codecs.json import UNI_JSON
from herald.gateway.session.client import Client
from herald.gateway.transports import uni
from herald.gateway.transports.http_stream import line
from herald.gateway.transports.streaming import Request, StreamConnection, StreamVariant


class UniHttpStream(StreamVariant):
    name = "uni_http_stream"
    methods = ("POST",)

    def codec(self, request: Request) -> Codec:
        return UNI_JSON

    def framer(self, codec: Codec) -> Callable[[bytes], bytes]:
        return line

    def start(self, stream: StreamConnection, client: Client, data: bytes) -> None:
        uni.connect(client, data)
