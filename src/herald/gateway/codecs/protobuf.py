"""Sans-I/O codec of the client protocol, Protobuf flavour (spec §1.2; schema in ``protobuf_schema.py``).

Frames are binary and hold one or more messages, each prefixed with its length as a varint
(Protobuf's length-delimited stream framing): a client frame carries Commands, a server frame
Replies (pushes inside, exactly as in JSON). A pong is an empty Command, so the SDKs send the
one byte ``00``. ``bytes`` fields carry the application's payload as is; Herald's payloads
are JSON (the server API takes JSON, history stores it), so the bytes a Protobuf client
publishes must be JSON too (checked by the session, error 107 otherwise).

Values go through the same :mod:`messages` types as JSON, so the session core never sees an
encoding. The converters are generic (driven by the descriptors and the struct fields) and
planned once per type; a publication is converted once per node, however many subscribers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from msgspec import Raw, Struct

from herald.errors import ReplyError
from herald.gateway.codecs.messages import Command, ErrorBody, ProtocolViolation, Publication, Push
from herald.gateway.codecs.protobuf_schema import message_class

CommandMessage: Final = message_class("Command")
ReplyMessage: Final = message_class("Reply")
PushMessage: Final = message_class("Push")
EmulationRequestMessage: Final = message_class("EmulationRequest")

# Nested deeper than this is refused, as JSON's decoder refuses deep nesting (3501).
_MAX_COMMANDS_PER_FRAME: Final = 10_000


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def split_delimited(frame: bytes) -> list[bytes]:
    """The messages of a varint-length-delimited frame; ProtocolViolation when it is cut short."""
    parts: list[bytes] = []
    pos, end = 0, len(frame)
    while pos < end:
        length = shift = 0
        while True:
            if pos >= end or shift > 28:
                raise ProtocolViolation("truncated length prefix")
            byte = frame[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if pos + length > end:
            raise ProtocolViolation("message longer than the frame")
        parts.append(frame[pos : pos + length])
        pos += length
        if len(parts) > _MAX_COMMANDS_PER_FRAME:
            raise ProtocolViolation("too many messages in one frame")
    return parts


# --- Protobuf message -> plain values (then msgspec.convert into the messages types)


def _to_plain(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        out[fd.name] = _value_to_plain(fd, value)
    return out


def _value_to_plain(fd: FieldDescriptor, value: Any) -> Any:
    mt = fd.message_type
    if mt is not None and mt.GetOptions().map_entry:
        value_fd = mt.fields_by_name["value"]
        return {k: _value_to_plain(value_fd, v) for k, v in value.items()}
    if fd.is_repeated:
        return [_to_plain(v) if mt is not None else v for v in value]
    if mt is not None:
        return _to_plain(value)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return Raw(value)
    return value


# --- messages types -> Protobuf message

_Step = Callable[[Any, Any], None]
_plans: dict[tuple[Descriptor, type], list[tuple[str, _Step]]] = {}


def _fill(msg: Any, value: Struct) -> None:
    key = (msg.DESCRIPTOR, type(value))
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = _plan(msg.DESCRIPTOR, type(value))
    for name, step in plan:
        field_value = getattr(value, name)
        if field_value is not None:
            step(msg, field_value)


def _plan(descriptor: Descriptor, cls: type) -> list[tuple[str, _Step]]:
    """How to copy each struct field onto the message; a field the schema lacks is a bug."""
    plan: list[tuple[str, _Step]] = []
    for name in cls.__struct_fields__:  # type: ignore[attr-defined]
        fd = descriptor.fields_by_name[name]
        plan.append((name, _step(fd)))
    return plan


def _step(fd: FieldDescriptor) -> _Step:
    name = fd.name
    mt = fd.message_type
    if mt is not None and mt.GetOptions().map_entry:
        if mt.fields_by_name["value"].message_type is not None:

            def map_of_messages(msg: Any, value: dict[str, Struct]) -> None:
                target = getattr(msg, name)
                for k, v in value.items():
                    _fill(target[k], v)

            return map_of_messages
        return lambda msg, value: getattr(msg, name).update(value)
    if fd.is_repeated:

        def list_of_messages(msg: Any, value: list[Struct]) -> None:
            target = getattr(msg, name)
            for item in value:
                _fill(target.add(), item)

        return list_of_messages
    if mt is not None:

        def message(msg: Any, value: Struct) -> None:
            target = getattr(msg, name)
            target.SetInParent()  # present even when empty ("publish": {} in JSON)
            _fill(target, value)

        return message
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return lambda msg, value: setattr(msg, name, bytes(value))
    return lambda msg, value: setattr(msg, name, value)


def _delimited(msg: Any) -> bytes:
    body: bytes = msg.SerializeToString()
    return varint(len(body)) + body


# --- the codec


def decode_commands(frame: bytes | str) -> list[Command]:
    if isinstance(frame, str):
        raise ProtocolViolation("a text frame on a Protobuf connection")
    parts = split_delimited(frame)
    if not parts:
        raise ProtocolViolation("empty frame")
    commands = []
    for part in parts:
        try:
            msg = CommandMessage.FromString(part)
        except (DecodeError, RecursionError) as exc:
            raise ProtocolViolation(f"invalid Command: {exc}") from None
        try:
            commands.append(msgspec.convert(_to_plain(msg), Command))
        except msgspec.ValidationError as exc:
            raise ProtocolViolation(str(exc)) from None
    return commands


def encode_reply(cmd_id: int, method: str, result: Struct) -> bytes:
    reply = ReplyMessage(id=cmd_id)
    target = getattr(reply, method)
    target.SetInParent()
    _fill(target, result)
    return _delimited(reply)


def encode_error_reply(cmd_id: int, error: ReplyError) -> bytes:
    reply = ReplyMessage(id=cmd_id)
    _fill(reply.error, ErrorBody(error.code, error.message, error.temporary))
    return _delimited(reply)


def encode_push(push: Push) -> bytes:
    reply = ReplyMessage()
    reply.push.SetInParent()
    _fill(reply.push, push)
    return _delimited(reply)


def encode_publication_push(channel: str, pub: Publication) -> bytes:
    return encode_push(Push(channel=channel, pub=pub))


def decode_emulation_request(body: bytes) -> tuple[str, str, bytes]:
    """(node, session, commands frame) of a Protobuf ``/emulation`` body (spec §1.8)."""
    try:
        msg = EmulationRequestMessage.FromString(body)
    except DecodeError as exc:
        raise ProtocolViolation(f"invalid EmulationRequest: {exc}") from None
    return msg.node, msg.session, msg.data


class ProtobufCodec:
    name: Final = "protobuf"
    binary: Final = True
    unidirectional: Final = False
    separator: Final = b""
    ping: Final = _delimited(ReplyMessage())  # an empty Reply: b"\x00"
    pong: Final = b"\x00"  # an empty Command

    decode_commands = staticmethod(decode_commands)
    encode_reply = staticmethod(encode_reply)
    encode_error_reply = staticmethod(encode_error_reply)
    encode_push = staticmethod(encode_push)
    encode_publication_push = staticmethod(encode_publication_push)

    @staticmethod
    def delta_data(data: bytes) -> Raw | None:
        return Raw(data)


PROTOBUF: Final = ProtobufCodec()
