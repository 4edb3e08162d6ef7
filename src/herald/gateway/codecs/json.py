"""Sans-I/O codec of the client protocol, JSON flavour (spec §1.3-§3).

Bytes in, typed commands out; typed results in, bytes out. No sockets, no clocks.

Wire rules this module owns:
* A client frame holds one or more commands joined by ``\\n`` (one trailing ``\\n`` allowed).
  An empty frame or a command that is not a JSON object of the right shape is a protocol
  violation: :class:`ProtocolViolation` (the caller disconnects with 3501).
* A frame that is not UTF-8 is a violation too, wherever the bad bytes are: the decoder would
  pass them through in embedded JSON and skipped keys, and a subscriber's WebSocket fails on
  a text frame that is not UTF-8 (RFC 6455 §8.1).
* Unknown fields (``flag``, ``tf``, ``headers`` ...) are ignored.
* Server messages are compact single-line JSON joined by ``\\n``, never with blank lines.
* ``data``/``info`` are raw embedded JSON (:class:`msgspec.Raw`), passed through untouched
  except that raw newlines (which can only be insignificant whitespace) are removed.
"""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import Raw, Struct

from herald.errors import ReplyError
from herald.gateway.codecs.messages import (
    Command,
    ErrorBody,
    ProtocolViolation,
    Publication,
    Push,
    UnsubscribePush,
    raw,
)

_command_decoder: Final = msgspec.json.Decoder(Command)


def decode_commands(frame: bytes | str) -> list[Command]:
    """Split a client frame into commands, in order (spec §1.3)."""
    if isinstance(frame, str):
        try:
            frame = frame.encode()
        except UnicodeEncodeError:  # a lone surrogate: no UTF-8 form
            raise ProtocolViolation("not UTF-8") from None
    if frame.endswith(b"\n"):
        frame = frame[:-1]
    if not frame.strip():
        raise ProtocolViolation("empty frame")
    if not is_utf8(frame):
        raise ProtocolViolation("not UTF-8")
    try:
        return [_command_decoder.decode(part) for part in frame.split(b"\n")]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolViolation(str(exc)) from None
    except RecursionError:  # embedded JSON nested deeper than the decoder goes
        raise ProtocolViolation("nested too deeply") from None


def is_utf8(data: bytes) -> bool:
    """Whether ``data`` is UTF-8 text (the common all-ASCII case costs one pass in C)."""
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def clean_raw(data: Raw) -> Raw:
    """Drop raw newlines from embedded JSON so every message stays on one line (spec §1.3)."""
    buf = bytes(data)
    if b"\n" in buf or b"\r" in buf:
        return raw(buf.replace(b"\r", b"").replace(b"\n", b""))
    return data


class _PushReply(Struct):
    push: Push


_encoder: Final = msgspec.json.Encoder()
encode_json: Final = _encoder.encode

PING: Final = b"{}"


def encode_reply(cmd_id: int, method: str, result: Struct) -> bytes:
    """``{"id":N,"<method>":{...}}``: the result object is present even when empty."""
    return b'{"id":%d,"%s":%s}' % (cmd_id, method.encode(), _encoder.encode(result))


def encode_error_reply(cmd_id: int, error: ReplyError) -> bytes:
    body = ErrorBody(error.code, error.message, error.temporary)
    return b'{"id":%d,"error":%s}' % (cmd_id, _encoder.encode(body))


def encode_push(push: Push) -> bytes:
    return _encoder.encode(_PushReply(push))


def encode_publication_push(channel: str, pub: Publication) -> bytes:
    """The hot path: built once per publication per node, written to every subscriber."""
    return _encoder.encode(_PushReply(Push(channel=channel, pub=pub)))


def encode_unsubscribe_push(channel: str, code: int, reason: str) -> bytes:
    return encode_push(Push(channel=channel, unsubscribe=UnsubscribePush(code, reason)))


def _delta_data(data: bytes) -> Raw | None:
    """JSON carries a delta subscriber's payload as a JSON string (spec §2.2): the SDKs
    ``JSON.parse`` a full one and apply a fossil delta to the UTF-8 bytes of the string. A
    delta that cut a multi-byte character in two is not a string: the caller sends it whole."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    return Raw(_encoder.encode(text))


class JsonCodec:
    """The JSON protocol (spec §1.3): Replies joined by newlines."""

    name: Final = "json"
    binary: Final = False
    unidirectional: Final = False
    separator: Final = b"\n"
    ping: Final = PING
    pong: Final = b"{}"

    decode_commands = staticmethod(decode_commands)
    encode_reply = staticmethod(encode_reply)
    encode_error_reply = staticmethod(encode_error_reply)
    encode_push = staticmethod(encode_push)
    encode_publication_push = staticmethod(encode_publication_push)
    delta_data = staticmethod(_delta_data)


class UniJsonCodec:
    """Unidirectional JSON (spec §1.7): bare Push objects, ``{}`` pings, no commands."""

    name: Final = "uni_json"
    binary: Final = False
    unidirectional: Final = True
    separator: Final = b"\n"
    ping: Final = PING
    pong: Final = b""

    @staticmethod
    def decode_commands(frame: bytes) -> list[Command]:
        raise ProtocolViolation("a unidirectional connection sends no commands")

    @staticmethod
    def encode_reply(cmd_id: int, method: str, result: Struct) -> bytes:
        raise TypeError("a unidirectional connection gets no replies")

    @staticmethod
    def encode_error_reply(cmd_id: int, error: ReplyError) -> bytes:
        raise TypeError("a unidirectional connection gets no replies")

    @staticmethod
    def encode_push(push: Push) -> bytes:
        return _encoder.encode(push)

    @staticmethod
    def encode_publication_push(channel: str, pub: Publication) -> bytes:
        return _encoder.encode(Push(channel=channel, pub=pub))

    delta_data = staticmethod(_delta_data)


JSON: Final = JsonCodec()
UNI_JSON: Final = UniJsonCodec()
