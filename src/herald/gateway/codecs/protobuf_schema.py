"""The client protocol's Protobuf schema (package ``centrifugal.centrifuge.protocol``), as descriptors.

Written from the protocol's public definition (its ``client.proto``): message names, field
names, numbers and types are the wire contract; only the fields Herald reads or writes are
declared (a parser skips the others, as Protobuf does for any unknown field). The descriptors
are built at import time, so no generated code is kept in the tree and no compiler is needed.

Each field is ``(name, number, type)``; a type is a scalar name, a message name, ``[T]`` for
a repeated field or ``{T}`` for a ``map<string, T>``.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE: Final = "centrifugal.centrifuge.protocol"

Field = tuple[str, int, str]

SCHEMA: Final[dict[str, list[Field]]] = {
    "Error": [("code", 1, "uint32"), ("message", 2, "string"), ("temporary", 3, "bool")],
    "EmulationRequest": [("node", 1, "string"), ("session", 2, "string"), ("data", 3, "bytes")],
    "Command": [
        ("id", 1, "uint32"),
        ("connect", 4, "ConnectRequest"),
        ("subscribe", 5, "SubscribeRequest"),
        ("unsubscribe", 6, "UnsubscribeRequest"),
        ("publish", 7, "PublishRequest"),
        ("presence", 8, "PresenceRequest"),
        ("presence_stats", 9, "PresenceStatsRequest"),
        ("history", 10, "HistoryRequest"),
        ("ping", 11, "PingRequest"),
        ("send", 12, "SendRequest"),
        ("rpc", 13, "RPCRequest"),
        ("refresh", 14, "RefreshRequest"),
        ("sub_refresh", 15, "SubRefreshRequest"),
    ],
    "Reply": [
        ("id", 1, "uint32"),
        ("error", 2, "Error"),
        ("push", 4, "Push"),
        ("connect", 5, "ConnectResult"),
        ("subscribe", 6, "SubscribeResult"),
        ("unsubscribe", 7, "UnsubscribeResult"),
        ("publish", 8, "PublishResult"),
        ("presence", 9, "PresenceResult"),
        ("presence_stats", 10, "PresenceStatsResult"),
        ("history", 11, "HistoryResult"),
        ("ping", 12, "PingResult"),
        ("rpc", 13, "RPCResult"),
        ("refresh", 14, "RefreshResult"),
        ("sub_refresh", 15, "SubRefreshResult"),
    ],
    "Push": [
        ("channel", 2, "string"),
        ("pub", 4, "Publication"),
        ("join", 5, "Join"),
        ("leave", 6, "Leave"),
        ("unsubscribe", 7, "Unsubscribe"),
        ("message", 8, "Message"),
        ("subscribe", 9, "Subscribe"),
        ("connect", 10, "Connect"),
        ("disconnect", 11, "Disconnect"),
        ("refresh", 12, "Refresh"),
    ],
    "ClientInfo": [
        ("user", 1, "string"),
        ("client", 2, "string"),
        ("conn_info", 3, "bytes"),
        ("chan_info", 4, "bytes"),
    ],
    "Publication": [
        ("data", 4, "bytes"),
        ("info", 5, "ClientInfo"),
        ("offset", 6, "uint64"),
        ("tags", 7, "{string}"),
        ("delta", 8, "bool"),
    ],
    "Join": [("info", 1, "ClientInfo")],
    "Leave": [("info", 1, "ClientInfo")],
    "Unsubscribe": [("code", 2, "uint32"), ("reason", 3, "string")],
    "Subscribe": [
        ("recoverable", 1, "bool"),
        ("epoch", 4, "string"),
        ("offset", 5, "uint64"),
        ("positioned", 6, "bool"),
        ("data", 7, "bytes"),
    ],
    "Message": [("data", 1, "bytes")],
    "Connect": [
        ("client", 1, "string"),
        ("version", 2, "string"),
        ("data", 3, "bytes"),
        ("subs", 4, "{SubscribeResult}"),
        ("expires", 5, "bool"),
        ("ttl", 6, "uint32"),
        ("ping", 7, "uint32"),
        ("pong", 8, "bool"),
        ("session", 9, "string"),
        ("node", 10, "string"),
        ("time", 11, "int64"),
    ],
    "Disconnect": [("code", 1, "uint32"), ("reason", 2, "string")],
    "Refresh": [("expires", 1, "bool"), ("ttl", 2, "uint32")],
    "ConnectRequest": [
        ("token", 1, "string"),
        ("data", 2, "bytes"),
        ("subs", 3, "{SubscribeRequest}"),
        ("name", 4, "string"),
        ("version", 5, "string"),
    ],
    "ConnectResult": [
        ("client", 1, "string"),
        ("version", 2, "string"),
        ("expires", 3, "bool"),
        ("ttl", 4, "uint32"),
        ("data", 5, "bytes"),
        ("subs", 6, "{SubscribeResult}"),
        ("ping", 7, "uint32"),
        ("pong", 8, "bool"),
        ("session", 9, "string"),
        ("node", 10, "string"),
        ("time", 11, "int64"),
    ],
    "RefreshRequest": [("token", 1, "string")],
    "RefreshResult": [("client", 1, "string"), ("version", 2, "string"), ("expires", 3, "bool"), ("ttl", 4, "uint32")],
    "SubscribeRequest": [
        ("channel", 1, "string"),
        ("token", 2, "string"),
        ("recover", 3, "bool"),
        ("epoch", 6, "string"),
        ("offset", 7, "uint64"),
        ("data", 8, "bytes"),
        ("positioned", 9, "bool"),
        ("recoverable", 10, "bool"),
        ("join_leave", 11, "bool"),
        ("delta", 12, "string"),
        ("flag", 14, "int64"),
    ],
    "SubscribeResult": [
        ("expires", 1, "bool"),
        ("ttl", 2, "uint32"),
        ("recoverable", 3, "bool"),
        ("epoch", 6, "string"),
        ("publications", 7, "[Publication]"),
        ("recovered", 8, "bool"),
        ("offset", 9, "uint64"),
        ("positioned", 10, "bool"),
        ("data", 11, "bytes"),
        ("was_recovering", 12, "bool"),
        ("delta", 13, "bool"),
    ],
    "SubRefreshRequest": [("channel", 1, "string"), ("token", 2, "string")],
    "SubRefreshResult": [("expires", 1, "bool"), ("ttl", 2, "uint32")],
    "UnsubscribeRequest": [("channel", 1, "string")],
    "UnsubscribeResult": [],
    "PublishRequest": [("channel", 1, "string"), ("data", 2, "bytes")],
    "PublishResult": [],
    "PresenceRequest": [("channel", 1, "string")],
    "PresenceResult": [("presence", 1, "{ClientInfo}")],
    "PresenceStatsRequest": [("channel", 1, "string")],
    "PresenceStatsResult": [("num_clients", 1, "uint32"), ("num_users", 2, "uint32")],
    "StreamPosition": [("offset", 1, "uint64"), ("epoch", 2, "string")],
    "HistoryRequest": [
        ("channel", 1, "string"),
        ("limit", 7, "int32"),
        ("since", 8, "StreamPosition"),
        ("reverse", 9, "bool"),
    ],
    "HistoryResult": [("publications", 1, "[Publication]"), ("epoch", 2, "string"), ("offset", 3, "uint64")],
    "PingRequest": [],
    "PingResult": [],
    "RPCRequest": [("data", 1, "bytes"), ("method", 2, "string")],
    "RPCResult": [("data", 1, "bytes")],
    "SendRequest": [("data", 1, "bytes")],
}

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS: Final = {
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "bool": _F.TYPE_BOOL,
    "uint32": _F.TYPE_UINT32,
    "uint64": _F.TYPE_UINT64,
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
}


def _set_type(field: Any, type_name: str) -> None:
    if type_name in _SCALARS:
        field.type = _SCALARS[type_name]
    else:
        field.type = _F.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{type_name}"


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="herald/client.proto", package=PACKAGE, syntax="proto3")
    for name, fields in SCHEMA.items():
        message = proto.message_type.add(name=name)
        for field_name, number, type_name in fields:
            field = message.field.add(name=field_name, number=number, label=_F.LABEL_OPTIONAL)
            if type_name.startswith("["):
                field.label = _F.LABEL_REPEATED
                _set_type(field, type_name[1:-1])
            elif type_name.startswith("{"):
                # A map is a repeated nested entry message with key = 1, value = 2 (Protobuf's rule).
                entry_name = "".join(part.capitalize() for part in field_name.split("_")) + "Entry"
                entry = message.nested_type.add(name=entry_name)
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
                value = entry.field.add(name="value", number=2, label=_F.LABEL_OPTIONAL)
                _set_type(value, type_name[1:-1])
                field.label = _F.LABEL_REPEATED
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{name}.{entry_name}"
            else:
                _set_type(field, type_name)
    return proto


_pool: Final = descriptor_pool.DescriptorPool()
_pool.Add(_file())


def message_class(name: str) -> Any:
    """The generated-at-runtime class of one schema message."""
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
