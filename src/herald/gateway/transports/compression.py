"""WebSocket permessage-deflate (RFC 7692) for ``websocket_compression`` (off by default).

Negotiated with the ``websockets`` library's extension, which also inflates what clients send.
The server always asks for ``server_no_context_takeover``: each message it sends is then
compressed on its own, so a broadcast is compressed once per payload, however many
subscribers share it (the same "encode once, write many" as uncompressed frames), at the cost
of a slightly worse ratio than a per-connection compression context would give. Messages
shorter than ``websocket_compression_min_size`` go uncompressed (pings, small replies), which
permessage-deflate allows per message.
"""

from __future__ import annotations

import zlib
from typing import Final

from websockets.exceptions import NegotiationError
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.headers import build_extension, parse_extension

_TAIL: Final = b"\x00\x00\xff\xff"
_WINDOW_BITS: Final = 15


def negotiate(offer: str) -> tuple[str, PerMessageDeflate] | None:
    """The response header and the extension for a client's ``Sec-WebSocket-Extensions``, or
    None to go uncompressed (nothing offered, or only what this server does not do)."""
    if "permessage-deflate" not in offer:
        return None
    factory = ServerPerMessageDeflateFactory(server_no_context_takeover=True)
    try:
        offers = parse_extension(offer)
    except ValueError:
        return None
    for name, params in offers:
        if name != "permessage-deflate":
            continue
        try:
            response, extension = factory.process_request_params(params, [])
        except NegotiationError:
            continue
        if extension.local_max_window_bits != _WINDOW_BITS:
            continue  # the shared frames are made with the full window
        return build_extension([(name, response)]), extension
    return None


def deflate(payload: bytes, level: int) -> bytes:
    """One message compressed on its own (RFC 7692 §7.2.1: the trailing empty block removed)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -_WINDOW_BITS)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4] if data.endswith(_TAIL) else data


class DeflatedFrameCache:
    """The compressed frame of the last payload written (compared by identity, as
    ``websocket._FrameCache``); payloads under ``min_size`` are framed uncompressed."""

    __slots__ = ("frame", "header", "level", "min_size", "opcode", "payload")

    def __init__(self, opcode: int, level: int, min_size: int) -> None:
        from herald.gateway.transports.websocket import frame_header  # the one frame writer

        self.header = frame_header
        self.opcode = opcode
        self.level = level
        self.min_size = min_size
        self.payload = b""
        self.frame = b""

    def framed(self, payload: bytes) -> bytes:
        if payload is not self.payload:
            self.payload = payload
            self.frame = self.frame_of(payload)
        return self.frame

    def frame_of(self, payload: bytes) -> bytes:
        if len(payload) < self.min_size:
            return self.header(0x80 | self.opcode, len(payload)) + payload
        data = deflate(payload, self.level)
        return self.header(0xC0 | self.opcode, len(data)) + data  # FIN + RSV1: compressed
