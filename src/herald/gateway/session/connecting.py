"""Connecting and refreshing a connection: token, limits, server-side subscriptions (spec §2.1, §2.9, §4).

Shared by every transport. A bidirectional connection sends ``connect`` as its first command
and gets a reply; a unidirectional one hands its ConnectRequest over at once and gets a
``connect`` push, its connect errors turned into disconnects (spec §1.7).

Server-side subscriptions made at connect: the token's channels when ``token_channels`` is
``subscribe``; the user's personal channel with ``user_subscribe_to_personal`` (spec §10.1);
on unidirectional transports also the channels the ConnectRequest's ``subs`` names, where
the connection may subscribe to them itself (spec §1.7).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from herald import errors
from herald.errors import Disconnect, ReplyError
from herald.gateway import access
from herald.gateway.codecs.messages import (
    ConnectRequest,
    ConnectResult,
    Push,
    RefreshRequest,
    RefreshResult,
    raw,
    ttl_until,
)
from herald.gateway.hub import Subscription
from herald.gateway.session import proxied
from herald.gateway.session.subscribing import SubscribeIntent, open_subscription, release_buffer
from herald.tokens import ConnectionClaims, InvalidToken, TokenExpired

if TYPE_CHECKING:
    from herald.gateway.session.client import Client

log = logging.getLogger(__name__)

# A unidirectional client cannot read an error reply: connect errors become disconnects (spec §1.7).
_UNI_DISCONNECTS: dict[int, Disconnect] = {
    109: errors.DISCONNECT_EXPIRED,
    110: errors.DISCONNECT_EXPIRED,
    111: errors.DISCONNECT_TOO_MANY_REQUESTS,
    103: errors.DISCONNECT_PERMISSION_DENIED,
}


def unidirectional_disconnect(error: ReplyError) -> Disconnect:
    return _UNI_DISCONNECTS.get(error.code, errors.DISCONNECT_SERVER_ERROR)


def personal_channel(client: Client) -> str:
    """``<namespace>:#<user>`` (or ``#<user>`` without a namespace): the user's own channel."""
    cfg = client.node.config
    name = f"{cfg.channel_user_boundary}{client.user}"
    ns = cfg.user_personal_channel_namespace
    return f"{ns}{cfg.channel_namespace_boundary}{name}" if ns else name


async def connect(client: Client, cmd_id: int, req: ConnectRequest) -> None:
    node, cfg = client.node, client.node.config
    if node.shutting_down:
        raise errors.DISCONNECT_SHUTDOWN
    now = time.time()
    claims: ConnectionClaims | None = None
    grant: proxied.ConnectGrant | None = None
    if req.token:
        try:
            claims = verify_connection_token(client, req.token, now)
        except ReplyError:
            client.unusable = True  # the SDK closes and reconnects with a new token
            raise
        user = claims.user
        if not user and cfg.disallow_anonymous_connection_tokens:
            raise errors.DISCONNECT_PERMISSION_DENIED
    elif proxied.connect_proxied(node) and (grant := await proxied.connect(client, req, now)) is not None:
        user = grant.user  # no token: the application backend decides (proxy.md §5)
    elif cfg.allow_anonymous_connect_without_token or cfg.client_insecure:
        user = ""
    else:
        log.info("client %s: connect without credentials", client.id)
        raise errors.DISCONNECT_BAD_REQUEST
    if client.closed:
        return  # the client went away while the backend was asked: its answer is discarded
    user_limit = cfg.client_user_connection_limit
    if user_limit and user and node.hub.user_connection_count(user) >= user_limit:
        raise errors.DISCONNECT_CONNECTION_LIMIT
    if cfg.client_connection_limit and node.hub.num_clients >= cfg.client_connection_limit:
        raise errors.DISCONNECT_CONNECTION_LIMIT
    server_channels: dict[str, Any] = {}
    if claims is not None:
        if claims.expires_at is not None and claims.expires_at <= now:
            client.unusable = True
            raise errors.ERROR_EXPIRED
        client.expires_at = claims.expires_at
        client.info = claims.info
        client.token_jti, client.token_iat = claims.jti, claims.iat
        client.scope = claims.scope
        if cfg.token_channels == "grant":
            client.grants = frozenset(claims.channels)
        else:
            server_channels = dict(claims.subs) if claims.subs else dict.fromkeys(claims.channels)
    expiries: dict[str, int] = {}
    if grant is not None:
        # The backend vouches for its channels: server-side subscriptions, no permission check
        # (proxy.md §3.1); their namespaces must exist all the same (102 below).
        client.expires_at, client.info, client.meta = grant.expires_at, grant.info, grant.meta
        server_channels = {channel: options for channel, (options, _) in grant.subs.items()}
        expiries = {channel: expire_at for channel, (_, expire_at) in grant.subs.items() if expire_at}
    client.user = user
    if cfg.user_subscribe_to_personal and user:
        server_channels.setdefault(personal_channel(client), None)
    granted_by = dict.fromkeys(server_channels, "server")
    if client.codec.unidirectional and req.subs:
        _requested_subscriptions(client, req.subs, server_channels, granted_by)
    if cfg.client_channel_limit and len(server_channels) > cfg.client_channel_limit:
        raise errors.DISCONNECT_CHANNEL_LIMIT
    for channel in server_channels:
        try:
            node.options(channel)  # a bad name (107) or an unknown namespace (102)
        except ReplyError:
            client.unusable = True
            raise
    client.mark_connected()

    result = ConnectResult(client=client.id, version=node.version)
    if client.session:
        result.session = client.session
        result.node = node.uid
    if grant is not None:
        result.data = raw(grant.data)
    if client.expires_at is not None and proxied.server_side_refresh(node):
        proxied.schedule_refresh(client)  # the server refreshes; the reply says nothing (proxy.md §6)
    elif client.expires_at is not None:
        result.expires = True
        result.ttl = ttl_until(client.expires_at, now)
        client.schedule_expiry_check()
    if cfg.ping_interval > 0 and client.app_pings:
        result.ping = max(1, round(cfg.ping_interval))
        # Unidirectional clients cannot answer pings (spec §1.5).
        result.pong = cfg.pong_timeout > 0 and not client.codec.unidirectional
    if cfg.client_connect_include_server_time:
        result.time = int(now * 1000)
    opened: list[Subscription] = []
    if server_channels:
        try:
            opened = await _open_server_subscriptions(client, server_channels, granted_by, req, result, expiries)
        except BaseException:
            # The connect failed as a whole: take back the registration and what was opened,
            # so the SDK's next connect finds nothing of this one.
            client.undo_connected()
            raise
    if client.codec.unidirectional:
        client.enqueue(client.codec.encode_push(Push(connect=result)))
    else:
        client.reply(cmd_id, "connect", result)
    for sub in opened:
        release_buffer(client, sub)
    client.start_pings()
    if cfg.user_personal_single_connection and user:
        # One connection per user (spec §10.1): this one stays, every older one of the user,
        # on any node, is closed.
        await node.keep_only_connection(user, client.id)


def _requested_subscriptions(
    client: Client, subs: Mapping[str, Any], server_channels: dict[str, Any], granted_by: dict[str, str]
) -> None:
    """A unidirectional ConnectRequest's ``subs``: subscribed where the connection may subscribe
    itself, silently left out where it may not; an unknown namespace is a bad request (spec §1.7)."""
    cfg, node = client.node.config, client.node
    for channel in subs:
        if channel in server_channels:
            continue
        if not channel:
            raise errors.DISCONNECT_BAD_REQUEST
        try:
            opts = node.options(channel)
        except ReplyError:
            raise errors.DISCONNECT_BAD_REQUEST from None
        try:
            access.check_subscribe_name(cfg, opts, channel)
            granted_by[channel] = access.subscribe_allowed_by(cfg, opts, channel, client.user, client.grants)
        except ReplyError:
            log.info("client %s: not subscribed to %s (not allowed)", client.id, channel)
            continue
        server_channels[channel] = None


async def _open_server_subscriptions(
    client: Client,
    server_channels: dict[str, Any],
    granted_by: dict[str, str],
    req: ConnectRequest,
    result: ConnectResult,
    expiries: Mapping[str, int] | None = None,
) -> list[Subscription]:
    """Server-side subscriptions, recovering what ``connect.subs`` asks for (spec §2.1)."""
    opened: list[Subscription] = []
    result.subs = {}
    recovery = req.subs or {}
    for channel, token_opts in server_channels.items():
        rec = recovery.get(channel)
        intent = SubscribeIntent(
            channel=channel,
            server_side=True,
            recover=bool(rec and rec.recover),
            offset=rec.offset if rec else 0,
            epoch=rec.epoch if rec else "",
            chan_info=token_opts.info if token_opts else None,
            data=token_opts.data if token_opts else None,
            override=token_opts.override if token_opts else {},
            granted_by=granted_by.get(channel, "server"),
            expires_at=(expiries or {}).get(channel),
        )
        sub, sub_result = await open_subscription(client, intent)
        opened.append(sub)
        result.subs[channel] = sub_result
    return opened


def verify_connection_token(
    client: Client, token: str, now: float, expired: Exception = errors.ERROR_TOKEN_EXPIRED, user: str | None = None
) -> ConnectionClaims:
    """Claims of a connection token (for ``user`` when given); ``expired`` when its ``exp`` has passed."""
    node = client.node
    if not node.verifier.configured:
        raise errors.DISCONNECT_INVALID_TOKEN
    try:
        claims = node.verifier.verify_connection(token, now)
    except TokenExpired:
        raise expired from None
    except InvalidToken as exc:
        log.info("client %s: invalid connection token: %s", client.id, exc)
        raise errors.DISCONNECT_INVALID_TOKEN from None
    if user is not None and claims.user != user:
        raise errors.DISCONNECT_INVALID_TOKEN
    if node.is_revoked(claims.user, claims.jti, claims.iat, claims.scope):
        raise errors.ERROR_TOKEN_EXPIRED  # decisions §3: like an expired token
    return claims


async def refresh(client: Client, cmd_id: int, req: RefreshRequest) -> None:
    if not req.token or proxied.server_side_refresh(client.node):
        raise errors.DISCONNECT_BAD_REQUEST  # also in server-side refresh mode (spec §2.9)
    now = time.time()
    # A refresh token already past its exp ends the connection (3005), the SDK reconnects.
    claims = verify_connection_token(client, req.token, now, expired=errors.DISCONNECT_EXPIRED, user=client.user)
    if claims.scope != client.scope:
        raise errors.DISCONNECT_INVALID_TOKEN  # a connection never moves to another environment
    if claims.expires_at is not None and claims.expires_at <= now:
        raise errors.ERROR_EXPIRED
    if client.node.config.token_channels == "subscribe":
        wanted = set(claims.subs) if claims.subs else set(claims.channels)
        current = {ch for ch, sub in client.subs.items() if sub.granted_by == "server"}
        if client.node.config.user_subscribe_to_personal and client.user:
            wanted.add(personal_channel(client))
        if wanted != current:
            raise errors.DISCONNECT_INSUFFICIENT_STATE
    else:
        client.grants = frozenset(claims.channels)
        # Access granted only by the old token ends with it: unsubscribe (code 2000, terminal).
        for channel, sub in list(client.subs.items()):
            if sub.granted_by == "grant" and channel not in client.grants:
                client.drop_subscription(sub, *errors.UNSUBSCRIBE_SERVER)
    client.info = claims.info
    client.token_jti, client.token_iat = claims.jti, claims.iat
    client.expires_at = claims.expires_at
    result = RefreshResult()
    if claims.expires_at is not None:
        result.expires = True
        result.ttl = ttl_until(claims.expires_at, now)
        client.schedule_expiry_check()
    client.reply(cmd_id, "refresh", result)
