"""The bodies of proxy requests and responses, as Centrifugo's HTTP proxy writes and reads them
(proxy.md §2, §3), so an application backend written for Centrifugo answers Herald unchanged.

Requests: every field is omitted when empty (Go ``omitempty``), except ``user``, which every
request but ``connect`` always carries (``""`` for an anonymous connection). ``data``, ``info``
and ``meta`` are embedded raw JSON; with ``proxy_binary_encoding`` the payload travels as
``b64data`` (standard base64 with padding) and ``encoding`` is ``"binary"``.

Responses: a JSON object with ``result``, ``error`` or ``disconnect``; unknown fields are
ignored. ``refresh`` and ``sub_refresh`` read only ``result`` (proxy.md §3.2, §3.5).
"""

from __future__ import annotations

from msgspec import Raw, Struct

from herald.gateway.codecs.messages import EMPTY_RAW, UInt32

# --------------------------------------------------------------------------- requests


class _Request(Struct, omit_defaults=True, kw_only=True):
    """What every request carries: who is asking, and over what (proxy.md §2)."""

    client: str
    transport: str
    protocol: str
    encoding: str


class _UserRequest(_Request, kw_only=True):
    """A request about an established connection: ``user`` is always sent, even ``""``."""

    user: str
    meta: Raw = EMPTY_RAW


class ConnectRequest(_Request, kw_only=True):
    name: str = ""
    version: str = ""
    data: Raw = EMPTY_RAW
    b64data: str = ""
    channels: list[str] = []


class RefreshRequest(_UserRequest, kw_only=True):
    pass


class SubscribeRequest(_UserRequest, kw_only=True):
    channel: str
    token: str = ""  # always empty: a subscribe with a token never reaches the proxy (proxy.md §3.3)
    data: Raw = EMPTY_RAW
    b64data: str = ""


class PublishRequest(_UserRequest, kw_only=True):
    channel: str
    data: Raw = EMPTY_RAW
    b64data: str = ""


class SubRefreshRequest(_UserRequest, kw_only=True):
    channel: str


class RPCRequest(_UserRequest, kw_only=True):
    method: str = ""
    data: Raw = EMPTY_RAW
    b64data: str = ""


# --------------------------------------------------------------------------- responses


class Error(Struct):
    """A custom error, passed to the client verbatim (proxy.md §4)."""

    code: UInt32
    message: str = ""
    temporary: bool = False


class Disconnect(Struct):
    """A custom disconnect: closes the whole connection (proxy.md §4)."""

    code: UInt32
    reason: str = ""


class BoolValue(Struct):
    value: bool


class SubscribeResult(Struct):
    """A subscribe result, and one entry of a connect result's ``subs`` (the same fields)."""

    info: Raw = EMPTY_RAW
    b64info: str = ""
    data: Raw = EMPTY_RAW
    b64data: str = ""
    override: dict[str, BoolValue] | None = None
    expire_at: int = 0


class ConnectResult(Struct):
    user: str = ""
    expire_at: int = 0
    info: Raw = EMPTY_RAW
    b64info: str = ""
    data: Raw = EMPTY_RAW
    b64data: str = ""
    channels: list[str] | None = None
    subs: dict[str, SubscribeResult] | None = None
    meta: Raw = EMPTY_RAW


class ConnectResponse(Struct):
    result: ConnectResult | None = None
    error: Error | None = None
    disconnect: Disconnect | None = None


class RefreshResult(Struct):
    expired: bool = False
    expire_at: int = 0
    info: Raw = EMPTY_RAW
    b64info: str = ""
    meta: Raw = EMPTY_RAW


class RefreshResponse(Struct):
    result: RefreshResult | None = None


class SubscribeResponse(Struct):
    result: SubscribeResult | None = None
    error: Error | None = None
    disconnect: Disconnect | None = None


class PublishResult(Struct):
    data: Raw = EMPTY_RAW
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""


class PublishResponse(Struct):
    result: PublishResult | None = None
    error: Error | None = None
    disconnect: Disconnect | None = None


class SubRefreshResult(Struct):
    expired: bool = False
    expire_at: int = 0
    info: Raw = EMPTY_RAW
    b64info: str = ""


class SubRefreshResponse(Struct):
    result: SubRefreshResult | None = None


class RPCResult(Struct):
    data: Raw = EMPTY_RAW
    b64data: str = ""


class RPCResponse(Struct):
    result: RPCResult | None = None
    error: Error | None = None
    disconnect: Disconnect | None = None
