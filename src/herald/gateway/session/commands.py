"""Channel commands of a connected client: subscribe, unsubscribe, sub_refresh, publish,
presence, presence_stats, history, rpc (spec §2.2-§2.10, decisions §1, §4).

Each command is a function of the session and its request; it replies through
``client.reply`` or raises :class:`ReplyError` / :class:`Disconnect`, which the session's
dispatcher turns into an error reply or a close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from msgspec import Raw

from herald import errors
from herald.gateway import access
from herald.gateway.codecs.json import clean_raw
from herald.gateway.codecs.messages import (
    EmptyResult,
    HistoryRequest,
    HistoryResult,
    PresenceRequest,
    PresenceResult,
    PresenceStatsRequest,
    PresenceStatsResult,
    PublishRequest,
    RPCRequest,
    RPCResult,
    SubRefreshRequest,
    SubRefreshResult,
    SubscribeRequest,
    UnsubscribeRequest,
    is_empty_raw,
    is_json,
    raw,
    ttl_until,
)
from herald.gateway.config import DELTA_TYPES, ChannelOptions
from herald.gateway.engines.broker import HistoryFilter
from herald.gateway.session import proxied
from herald.gateway.session.subscribing import SubscribeIntent, open_subscription, release_buffer
from herald.gateway.session.watch import watch_expiry
from herald.tokens import InvalidToken, SubscriptionClaims, TokenExpired

if TYPE_CHECKING:
    from herald.gateway.session.client import Client

log = logging.getLogger(__name__)


async def subscribe(client: Client, cmd_id: int, req: SubscribeRequest) -> None:
    channel = req.channel
    if not channel:
        raise errors.DISCONNECT_BAD_REQUEST
    if req.delta and req.delta not in DELTA_TYPES:
        raise errors.DISCONNECT_BAD_REQUEST  # an unknown delta type (spec §2.2)
    cfg = client.node.config
    if channel in client.subs:
        raise errors.ERROR_ALREADY_SUBSCRIBED
    if cfg.client_channel_limit and len(client.subs) >= cfg.client_channel_limit:
        raise errors.ERROR_LIMIT_EXCEEDED
    opts = client.node.options(channel)
    access.check_subscribe_name(cfg, opts, channel)
    intent = SubscribeIntent(
        channel=channel,
        recover=req.recover,
        offset=req.offset,
        epoch=req.epoch,
        positioned=req.positioned,
        recoverable=req.recoverable,
        join_leave=req.join_leave,
        reject_unrecovered=bool(req.flag & 2),
        delta=req.delta,
    )
    if req.token:
        _apply_subscription_token(client, intent, req.token, channel)
    elif proxied.subscribe_proxied(client, opts, channel):
        await proxied.subscribe(client, opts, intent, bytes(req.data) or None)
        if channel in client.subs:  # subscribed meanwhile by a command behind this one
            raise errors.ERROR_ALREADY_SUBSCRIBED
    else:
        intent.granted_by = access.subscribe_allowed_by(cfg, opts, channel, client.user, client.grants)
    sub, result = await open_subscription(client, intent)
    client.reply(cmd_id, "subscribe", result)
    release_buffer(client, sub)


def _apply_subscription_token(client: Client, intent: SubscribeIntent, token: str, channel: str) -> None:
    claims = _verify_subscription_token(client, token, channel, time.time(), errors.ERROR_PERMISSION_DENIED)
    intent.granted_by = "token"
    intent.expires_at = claims.expires_at
    intent.chan_info = claims.options.info
    intent.data = claims.options.data
    intent.override = claims.options.override


def _verify_subscription_token(
    client: Client, token: str, channel: str, now: float, invalid: Exception
) -> SubscriptionClaims:
    """Claims of a subscription token for this client and channel; ``invalid`` when it does not verify."""
    try:
        claims = client.node.verifier.verify_subscription(token, now)
    except TokenExpired:
        raise errors.ERROR_TOKEN_EXPIRED from None
    except InvalidToken as exc:
        log.info("client %s: invalid subscription token for %s: %s", client.id, channel, exc)
        raise invalid from None
    if claims.channel != channel or claims.user != client.user or (claims.client and claims.client != client.id):
        raise errors.DISCONNECT_INVALID_TOKEN
    if client.node.is_revoked(claims.user, claims.jti, claims.iat, claims.scope):
        raise errors.ERROR_TOKEN_EXPIRED
    if claims.expires_at is not None and claims.expires_at <= now:
        raise errors.ERROR_EXPIRED
    return claims


async def unsubscribe(client: Client, cmd_id: int, req: UnsubscribeRequest) -> None:
    if not req.channel:
        raise errors.DISCONNECT_BAD_REQUEST
    access.check_channel_name(client.node.config, req.channel)
    sub = client.subs.pop(req.channel, None)
    if sub is not None:
        await client.node.remove_subscription(sub, client.client_info(sub.chan_info))
    client.reply(cmd_id, "unsubscribe", EmptyResult())


async def sub_refresh(client: Client, cmd_id: int, req: SubRefreshRequest) -> None:
    if not req.channel:
        raise errors.DISCONNECT_BAD_REQUEST
    sub = client.subs.get(req.channel)
    if sub is None:
        raise errors.ERROR_PERMISSION_DENIED
    opts = client.node.config.channel_options_for(req.channel)
    if opts is not None and proxied.sub_refresh_proxied(client.node, opts):
        raise errors.DISCONNECT_BAD_REQUEST  # the server refreshes this subscription (spec §2.10)
    if not req.token:
        raise errors.ERROR_BAD_REQUEST
    now = time.time()
    # An already expired token answers 109 (decisions §4: stricter than the reference).
    claims = _verify_subscription_token(client, req.token, req.channel, now, errors.DISCONNECT_INVALID_TOKEN)
    sub.expires_at = claims.expires_at
    result = SubRefreshResult()
    if claims.expires_at is not None:
        result.expires = True
        result.ttl = ttl_until(claims.expires_at, now)
        watch_expiry(client, sub)
    client.reply(cmd_id, "sub_refresh", result)


async def publish(client: Client, cmd_id: int, req: PublishRequest) -> None:
    if not req.channel or is_empty_raw(req.data):
        raise errors.DISCONNECT_BAD_REQUEST
    if client.codec.binary and not is_json(req.data):
        # Payloads are JSON throughout Herald (server API, history, JSON subscribers), so a
        # Protobuf client's bytes must be JSON too.
        raise errors.ERROR_BAD_REQUEST
    opts = client.node.options(req.channel)
    sub = client.subs.get(req.channel)
    if proxied.publish_proxied(client.node, opts):
        # The backend decides instead of the allow_publish_* options, and may replace the data.
        decision = await proxied.publish(client, opts, req.channel, bytes(clean_raw(req.data)))
        info = client.client_info(sub.chan_info if sub else None)
        await client.node.publish(
            req.channel,
            Raw(decision.data),
            info=info,
            tags=decision.tags,
            skip_history=decision.skip_history,
            idempotency_key=decision.idempotency_key,
        )
        client.reply(cmd_id, "publish", EmptyResult())
        return
    if not access.can_publish(client.node.config, opts, client.user, sub is not None):
        raise errors.ERROR_PERMISSION_DENIED
    info = client.client_info(sub.chan_info if sub else None)
    await client.node.publish(req.channel, clean_raw(req.data), info=info)
    client.reply(cmd_id, "publish", EmptyResult())


def _readable(
    client: Client, channel: str, enabled: Callable[[ChannelOptions], bool], allowed: Callable[..., bool]
) -> None:
    """Checks for presence/history reads, in the reference's order: 3501, 102, 108, 103."""
    if not channel:
        raise errors.DISCONNECT_BAD_REQUEST
    opts = client.node.options(channel)
    if not enabled(opts):
        raise errors.ERROR_NOT_AVAILABLE
    if not allowed(client.node.config, opts, client.user, channel in client.subs):
        raise errors.ERROR_PERMISSION_DENIED


async def presence(client: Client, cmd_id: int, req: PresenceRequest) -> None:
    _readable(client, req.channel, _presence_on, access.can_read_presence)
    entries = await client.node.presence(req.channel)
    client.reply(cmd_id, "presence", PresenceResult(presence=dict(entries)))


async def presence_stats(client: Client, cmd_id: int, req: PresenceStatsRequest) -> None:
    _readable(client, req.channel, _presence_on, access.can_read_presence)
    clients, users = await client.node.presence_stats(req.channel)
    client.reply(cmd_id, "presence_stats", PresenceStatsResult(num_clients=clients, num_users=users))


async def history(client: Client, cmd_id: int, req: HistoryRequest) -> None:
    _readable(client, req.channel, _history_on, access.can_read_history)
    cap = client.node.config.client_history_max_publication_limit
    limit = req.limit
    if cap > 0 and (limit < 0 or limit > cap):
        limit = cap
    since = req.since
    if req.reverse and since is not None and since.offset == 0:
        raise errors.ERROR_BAD_REQUEST
    page = await client.node.history(req.channel, HistoryFilter(since=since, limit=limit, reverse=req.reverse))
    result = HistoryResult(publications=page.publications, epoch=page.top.epoch, offset=page.top.offset)
    client.reply(cmd_id, "history", result)


async def rpc(client: Client, cmd_id: int, req: RPCRequest) -> None:
    cfg = client.node.config
    if cfg.rpc_ping and req.method == cfg.rpc_ping_method:
        client.reply(cmd_id, "rpc", RPCResult())
        return
    if proxied.rpc_proxied(client.node):
        data = await proxied.rpc(client, req.method, bytes(req.data) or None)
        client.reply(cmd_id, "rpc", RPCResult(data=raw(data)))
        return
    raise errors.ERROR_NOT_AVAILABLE


def _presence_on(opts: ChannelOptions) -> bool:
    return opts.presence


def _history_on(opts: ChannelOptions) -> bool:
    return opts.history_enabled
