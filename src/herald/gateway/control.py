"""The control plane between nodes: the messages nodes exchange, and how one node carries out
a cluster-wide operation (server API ``disconnect``, ``unsubscribe``, ``subscribe``, ``refresh``,
token revocation) on its own connections.

``Session`` is what the node needs from a connection for that, beyond queuing messages.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Protocol

import msgspec
from msgspec import Raw

from herald import errors
from herald.errors import Disconnect
from herald.gateway.codecs.messages import EMPTY_RAW, ClientInfo, StreamPosition
from herald.gateway.hub import Hub, Outbox, Subscription
from herald.gateway.revocation import Revocations, reaches

log = logging.getLogger(__name__)


class Session(Outbox, Protocol):
    """What the node needs from a connection beyond queuing (implemented by ``client.Client``)."""

    @property
    def token_jti(self) -> str: ...

    @property
    def token_iat(self) -> int | None: ...

    @property
    def scope(self) -> str:
        """The environment prefix of the secret that verified the connection token ("" = unbound)."""

    @property
    def session(self) -> str:
        """The session id of an emulation or unidirectional connection ("" on WebSocket)."""

    def disconnect(self, disconnect: Disconnect) -> None: ...

    def server_unsubscribe(self, channel: str, code: int, reason: str) -> None: ...

    def server_subscribe(self, request: ServerSubscribe) -> Awaitable[None]: ...

    def server_refresh(self, expired: bool, expire_at: int, info: bytes | None) -> None: ...

    def check_position(self, sub: Subscription) -> None:
        """Compare a positioned subscription with its stream now (spec §6.2)."""

    @property
    def subs(self) -> Mapping[str, Subscription]: ...

    def client_info(self, chan_info: bytes | None = None) -> ClientInfo: ...


class ServerSubscribe(msgspec.Struct, omit_defaults=True):
    """Server API ``subscribe`` parameters as they travel between nodes."""

    channel: str
    info: Raw = EMPTY_RAW
    data: Raw = EMPTY_RAW
    expire_at: int = 0
    recover_since: StreamPosition | None = None


class NodeStats(msgspec.Struct, omit_defaults=True):
    """What a node tells the others about itself every few seconds (spec §9.1)."""

    # All but uptime are always present in the API's info result (spec §8.2).
    uid: str
    name: str
    version: str
    num_clients: int
    num_users: int
    num_channels: int
    num_subs: int
    uptime: int = 0


class Control(msgspec.Struct, omit_defaults=True):
    """A message for the other nodes: server API operations on connections, revocation,
    node heartbeats and channel surveys."""

    op: str
    node: str = ""
    target: str = ""  # only this node acts on it (survey replies)
    request: str = ""  # survey request id
    stats: NodeStats | None = None
    channels: dict[str, int] | None = None
    user: str = ""
    client: str = ""
    session: str = ""
    channel: str = ""
    whitelist: list[str] = []
    code: int = 0
    reason: str = ""
    expired: bool = False
    expire_at: int = 0
    issued_before: int = 0
    uid: str = ""
    info: Raw = EMPTY_RAW
    subscribe: ServerSubscribe | None = None
    data: bytes = b""  # commands for an emulation session held by the target node (spec §1.8)
    # The environment prefix of the API key behind the operation ("" = unbound): it reaches only
    # connections and tokens of that environment (decisions §2).
    scope: str = ""


_control_decoder = msgspec.json.Decoder(Control)
_controls_decoder = msgspec.json.Decoder(list[Control])


def decode_controls(data: bytes) -> list[Control]:
    """One engine message: a control, or a list of them sent in one loop turn."""
    return _controls_decoder.decode(data) if data[:1] == b"[" else [_control_decoder.decode(data)]


async def apply_control(hub: Hub[Session], revocations: Revocations, c: Control) -> None:
    """Carry out one operation on this node's connections and revocation list."""
    if c.op == "disconnect":
        code = Disconnect(c.code, c.reason) if c.code else errors.DISCONNECT_FORCE_NO_RECONNECT
        for session in _targets(hub, c):
            if session.id not in c.whitelist:
                session.disconnect(code)
    elif c.op == "unsubscribe":
        for session in _targets(hub, c):
            session.server_unsubscribe(c.channel, *errors.UNSUBSCRIBE_SERVER)
    elif c.op == "subscribe" and c.subscribe is not None:
        for session in _targets(hub, c):
            await session.server_subscribe(c.subscribe)
    elif c.op == "refresh":
        info = bytes(c.info) or None
        for session in _targets(hub, c):
            session.server_refresh(c.expired, c.expire_at, info)
    elif c.op == "revoke_token":
        revoke(hub, revocations, c.uid, c.expire_at, c.scope)
    elif c.op == "invalidate_user_tokens":
        invalidate_user(hub, revocations, c.user, c.issued_before, c.expire_at, c.scope)
    else:
        log.warning("unknown control operation %r", c.op)


def revoke(hub: Hub[Session], revocations: Revocations, jti: str, expire_at: int, scope: str) -> None:
    """Refuse a token from now on and close the connections holding it (3005, decisions §3)."""
    revocations.revoke(jti, expire_at, scope)
    for session in hub.all_clients():
        if jti and session.token_jti == jti and reaches(scope, session.scope):
            session.disconnect(errors.DISCONNECT_EXPIRED)


def invalidate_user(
    hub: Hub[Session], revocations: Revocations, user: str, issued_before: int, expire_at: int, scope: str
) -> None:
    """Refuse the user's tokens issued before ``issued_before`` and close the connections
    holding one (3005, decisions §3)."""
    revocations.invalidate_user(user, issued_before, expire_at, scope)
    for session in hub.user_clients(user):
        if (session.token_iat or 0) < issued_before and reaches(scope, session.scope):
            session.disconnect(errors.DISCONNECT_EXPIRED)


def _targets(hub: Hub[Session], c: Control) -> list[Session]:
    """The local connections an operation names (a client id, else every connection of the
    user), limited to the environment of the key behind it (decisions §2)."""
    if c.client:
        session = hub.client(c.client)
        found = [session] if session is not None and (not c.user or session.user == c.user) else []
    elif c.session:
        found = [s for s in hub.user_clients(c.user) if s.session == c.session]
    else:
        found = hub.user_clients(c.user)
    return [session for session in found if reaches(c.scope, session.scope)]
