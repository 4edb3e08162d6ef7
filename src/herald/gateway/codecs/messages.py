"""The client protocol's messages as typed values, independent of their encoding (spec §2-§3).

Commands a client sends, results and errors the server answers, pushes it sends unasked.
``data``/``info`` fields are :class:`msgspec.Raw`: the application's payload, passed through
untouched. Codecs (``json.py``, later others) turn frames into these values and back.

Every field is omitted when empty, except the always-present ones (spec §2 preamble): those are
declared without defaults below, so an encoder always writes them.
"""

from __future__ import annotations

import math
from typing import Annotated, Final

import msgspec
from msgspec import Meta, Raw, Struct

from herald.errors import Disconnect

UInt32 = Annotated[int, Meta(ge=0, le=0xFFFFFFFF)]
UInt64 = Annotated[int, Meta(ge=0, le=0x7FFFFFFFFFFFFFFF)]  # msgspec bounds stop at int64
Int64 = Annotated[int, Meta(ge=-0x8000000000000000, le=0x7FFFFFFFFFFFFFFF)]
UINT32_MAX: Final = 0xFFFFFFFF


# The one empty Raw every struct uses as its default. msgspec omits a default by identity, so an
# empty field must be *this* object (see :func:`raw`), never a fresh ``Raw()``, which would be
# written as an invalid ``"field":``.
EMPTY_RAW: Final = Raw()


def raw(data: bytes | None) -> Raw:
    """Embedded JSON for a struct field; EMPTY_RAW for nothing."""
    return Raw(data) if data else EMPTY_RAW


class ProtocolViolation(Exception):
    """The peer broke the protocol (bad JSON, wrong shape, empty frame): disconnect 3501."""


# ---------------------------------------------------------------------------------------------
# Shared value types


class StreamPosition(Struct, frozen=True, omit_defaults=True):
    offset: UInt64 = 0
    epoch: str = ""


class ClientInfo(Struct, omit_defaults=True):
    # user and client are always present on the wire (spec §3).
    user: str
    client: str
    conn_info: Raw = EMPTY_RAW
    chan_info: Raw = EMPTY_RAW


class Publication(Struct, omit_defaults=True):
    data: Raw
    info: ClientInfo | None = None
    offset: int = 0
    tags: dict[str, str] | None = None
    # Set on a publication written to a delta subscriber: ``data`` is a fossil delta against
    # the previous publication that subscriber received (spec §2.2 ``delta``).
    delta: bool = False


# ---------------------------------------------------------------------------------------------
# Client → server commands (spec §2)


class SubscribeRecovery(Struct, omit_defaults=True):
    """Per-channel recovery state in ``connect.subs`` (server-side subscriptions)."""

    recover: bool = False
    epoch: str = ""
    offset: UInt64 = 0


class ConnectRequest(Struct, omit_defaults=True):
    token: str = ""
    data: Raw = EMPTY_RAW
    subs: dict[str, SubscribeRecovery] | None = None
    name: str = ""
    version: str = ""


class SubscribeRequest(Struct, omit_defaults=True):
    channel: str = ""
    token: str = ""
    recover: bool = False
    epoch: str = ""
    offset: UInt64 = 0
    data: Raw = EMPTY_RAW
    positioned: bool = False
    recoverable: bool = False
    join_leave: bool = False
    delta: str = ""
    # Feature bits (spec §2.2): 1 = channel compaction (ignored), 2 = the SDK's get_state is in use,
    # so an unrecoverable subscribe must fail with error 112 rather than answer recovered=false.
    flag: Int64 = 0


class UnsubscribeRequest(Struct):
    channel: str = ""


class PublishRequest(Struct):
    channel: str = ""
    data: Raw = EMPTY_RAW


class PresenceRequest(Struct):
    channel: str = ""


class PresenceStatsRequest(Struct):
    channel: str = ""


class HistoryRequest(Struct):
    channel: str = ""
    limit: int = 0
    since: StreamPosition | None = None
    reverse: bool = False


class RPCRequest(Struct):
    data: Raw = EMPTY_RAW
    method: str = ""


class RefreshRequest(Struct):
    token: str = ""


class SubRefreshRequest(Struct):
    channel: str = ""
    token: str = ""


class SendRequest(Struct):
    data: Raw = EMPTY_RAW


class Command(Struct):
    id: UInt32 = 0
    connect: ConnectRequest | None = None
    subscribe: SubscribeRequest | None = None
    unsubscribe: UnsubscribeRequest | None = None
    publish: PublishRequest | None = None
    presence: PresenceRequest | None = None
    presence_stats: PresenceStatsRequest | None = None
    history: HistoryRequest | None = None
    ping: dict[str, object] | None = None
    send: SendRequest | None = None
    rpc: RPCRequest | None = None
    refresh: RefreshRequest | None = None
    sub_refresh: SubRefreshRequest | None = None


# The request fields of a Command, in the order a server looks for them.
METHODS: Final = (
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
)


def command_method(cmd: Command) -> str | None:
    """The one request field a command carries; None for a pong (spec §1.4)."""
    for name in METHODS:
        if getattr(cmd, name) is not None:
            return name
    return None


def ttl_until(expires_at: float, now: float) -> int:
    """A reply's ``ttl``: whole seconds until ``expires_at``, at least 1, and within the field's
    uint32 (spec §2.1), so an expiry after the year 2106 is reported as the largest ttl it holds."""
    return min(UINT32_MAX, max(1, math.ceil(expires_at - now)))


def is_json(data: Raw) -> bool:
    """Whether embedded bytes are one JSON document (what a binary codec's payload must be)."""
    try:
        msgspec.json.decode(bytes(data))
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


def is_empty_raw(data: Raw) -> bool:
    """Empty or ``null`` embedded JSON counts as absent (the protobuf bytes field is empty)."""
    return bytes(data).strip() in (b"", b"null")


# ---------------------------------------------------------------------------------------------
# Server → client results (spec §2)


class ErrorBody(Struct, omit_defaults=True):
    code: int
    message: str
    temporary: bool = False


class SubscribeResult(Struct, omit_defaults=True):
    expires: bool = False
    ttl: int = 0
    recoverable: bool = False
    epoch: str = ""
    publications: list[Publication] = []
    recovered: bool = False
    offset: int = 0
    positioned: bool = False
    data: Raw = EMPTY_RAW
    was_recovering: bool = False
    delta: bool = False  # fossil delta negotiated for this subscription


class ConnectResult(Struct, omit_defaults=True):
    client: str
    version: str = ""
    expires: bool = False
    ttl: int = 0
    data: Raw = EMPTY_RAW
    subs: dict[str, SubscribeResult] | None = None
    ping: int = 0
    pong: bool = False
    session: str = ""
    node: str = ""
    time: int = 0


class RefreshResult(Struct, omit_defaults=True):
    expires: bool = False
    ttl: int = 0


class SubRefreshResult(Struct, omit_defaults=True):
    expires: bool = False
    ttl: int = 0


class EmptyResult(Struct):
    """``unsubscribe``, ``publish``: the result object must still be present."""


class PresenceResult(Struct):
    presence: dict[str, ClientInfo]


class PresenceStatsResult(Struct):
    num_clients: int
    num_users: int


class HistoryResult(Struct):
    publications: list[Publication]
    epoch: str
    offset: int


class RPCResult(Struct, omit_defaults=True):
    data: Raw = EMPTY_RAW


# ---------------------------------------------------------------------------------------------
# Pushes (spec §3)


class JoinLeave(Struct):
    info: ClientInfo


class UnsubscribePush(Struct):
    code: int
    reason: str


class SubscribePush(Struct, omit_defaults=True):
    recoverable: bool = False
    epoch: str = ""
    offset: int = 0
    positioned: bool = False
    data: Raw = EMPTY_RAW


class MessagePush(Struct):
    data: Raw


class RefreshPush(Struct, omit_defaults=True):
    expires: bool = False
    ttl: int = 0


class DisconnectPush(Struct):
    """Sent before a stream ends on emulation and unidirectional transports (spec §1.7, §1.8)."""

    code: int
    reason: str


class Push(Struct, omit_defaults=True):
    channel: str = ""
    pub: Publication | None = None
    join: JoinLeave | None = None
    leave: JoinLeave | None = None
    unsubscribe: UnsubscribePush | None = None
    subscribe: SubscribePush | None = None
    message: MessagePush | None = None
    connect: ConnectResult | None = None  # unidirectional transports only (spec §1.7)
    disconnect: DisconnectPush | None = None
    refresh: RefreshPush | None = None


def close_reason(disconnect: Disconnect) -> str:
    """Close reasons must be plain text within the WebSocket limit (spec §1.6)."""
    return disconnect.reason.encode()[:123].decode(errors="ignore")
