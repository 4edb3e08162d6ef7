"""What every encoding of the client protocol offers the session core and the transports.

An encoding (JSON, Protobuf) turns frames into :mod:`messages` values and values into bytes.
A session holds one :class:`Codec` for its whole life, chosen by the transport from the
request (WebSocket subprotocol, ``?format=``/``?cf_protocol=``, ``Content-Type``). Bytes a
codec returns are one complete message; several are joined into one frame with
``separator`` (a newline for JSON, nothing for Protobuf, whose messages carry their length).
"""

from __future__ import annotations

from typing import Protocol

from msgspec import Raw, Struct

from herald.errors import ReplyError
from herald.gateway.codecs.messages import Command, Publication, Push


class Codec(Protocol):
    @property
    def name(self) -> str:
        """``json`` or ``protobuf``: also the key under which broadcasts are encoded once."""

    @property
    def binary(self) -> bool:
        """Whether frames are binary (WebSocket binary frames, ``application/octet-stream``)."""

    @property
    def unidirectional(self) -> bool:
        """Pushes without the Reply wrapper, no commands after connect (spec §1.7)."""

    @property
    def separator(self) -> bytes: ...

    @property
    def ping(self) -> bytes:
        """The server's ping message (spec §1.5)."""

    @property
    def pong(self) -> bytes:
        """A client frame holding exactly one pong, as the SDKs send it: handled without decoding."""

    def decode_commands(self, frame: bytes) -> list[Command]:
        """Commands of one client frame, in order; ProtocolViolation when it is not one."""

    def encode_reply(self, cmd_id: int, method: str, result: Struct) -> bytes: ...

    def encode_error_reply(self, cmd_id: int, error: ReplyError) -> bytes: ...

    def encode_push(self, push: Push) -> bytes: ...

    def encode_publication_push(self, channel: str, pub: Publication) -> bytes:
        """The hot path: built once per publication per node and encoding."""

    def delta_data(self, data: bytes) -> Raw | None:
        """``data`` of a publication to a delta subscriber (a full payload or a fossil delta),
        as this encoding carries it; None when it cannot carry these bytes (spec §2.2)."""
