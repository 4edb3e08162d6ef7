"""Opening a subscription: options, positioning, recovery, presence, join — in a safe order.

Shared by client-side subscribes, server-side subscriptions at connect (``connect.subs``)
and live server API subscriptions. The order matters (spec §6.3): index the subscription in
the hub first (publications start being buffered on it), then read the stream top or
recover history, then reply, then :func:`release_buffer` delivers what arrived meanwhile.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from herald.gateway import access
from herald.gateway.broker import HistoryFilter, UnrecoverablePosition
from herald.gateway.config import ChannelOptions
from herald.gateway.hub import Subscription
from herald.gateway.node import Node
from herald.gateway.recovery import is_cache_recovered, is_stream_recovered, merge_buffered
from herald.protocol import Publication, StreamPosition, SubscribeResult, encode_publication_push, raw

if TYPE_CHECKING:
    from herald.gateway.client import Client


@dataclass(slots=True)
class SubscribeIntent:
    channel: str
    server_side: bool = False
    recover: bool = False
    offset: int = 0
    epoch: str = ""
    positioned: bool = False
    recoverable: bool = False
    join_leave: bool = False
    chan_info: bytes | None = None
    data: bytes | None = None
    override: Mapping[str, bool] = field(default_factory=dict)
    expires_at: int | None = None
    granted_by: str = ""


async def open_subscription(client: Client, intent: SubscribeIntent) -> tuple[Subscription, SubscribeResult]:
    node, cfg = client.node, client.node.config
    channel = intent.channel
    opts = node.options(channel)
    override = intent.override
    may_read_history = access.can_read_history(cfg, opts, client.user, True)
    recoverable = opts.history_enabled and (
        override.get("force_recovery", opts.force_recovery)
        or (intent.recoverable and (opts.allow_recovery or may_read_history))
    )
    positioned = opts.history_enabled and (
        recoverable
        or override.get("force_positioning", opts.force_positioning)
        or (intent.positioned and (opts.allow_positioning or may_read_history))
    )
    sub = Subscription(client, channel, server_side=intent.server_side)
    sub.positioned = positioned
    sub.recoverable = recoverable
    sub.chan_info = intent.chan_info
    sub.expires_at = intent.expires_at
    sub.granted_by = intent.granted_by
    sub.presence = override.get("presence", opts.presence)
    sub.publishes_join_leave = override.get("join_leave", opts.join_leave)
    sub.join_leave = override.get("force_push_join_leave", opts.force_push_join_leave) or (
        sub.publishes_join_leave and intent.join_leave and access.can_read_presence(cfg, opts, client.user, True)
    )

    client.subs[channel] = sub
    await node.add_subscription(sub)
    result = SubscribeResult(was_recovering=intent.recover)
    result.data = raw(intent.data)
    try:
        if positioned:
            result.positioned = True
            result.recoverable = recoverable
            if intent.recover and recoverable:
                pubs, top, recovered = await _recover(node, opts, intent)
                result.recovered = recovered
                if recovered:
                    result.publications = pubs
                    result.offset = intent.offset  # the SDK advances with each publication (spec §6.3)
                else:
                    result.offset = top.offset
            else:
                top = await node.stream_top(channel, opts)
                result.offset = top.offset
            result.epoch = top.epoch
            sub.offset, sub.epoch = top.offset, top.epoch
        await node.announce_join(sub, client.client_info(sub.chan_info))
    except BaseException:
        if client.subs.get(channel) is sub:
            del client.subs[channel]
        await node.remove_subscription(sub, None)
        raise
    if sub.expires_at is not None:
        result.expires = True
        result.ttl = max(1, math.ceil(sub.expires_at - time.time()))
        client.schedule_subscription_expiry(sub)
    return sub, result


async def _recover(
    node: Node, opts: ChannelOptions, intent: SubscribeIntent
) -> tuple[list[Publication], StreamPosition, bool]:
    """Read what the client missed; (publications, stream top, recovered)."""
    meta_ttl = node.config.history_meta_ttl(opts)
    if opts.force_recovery_mode == "cache":
        page = await node.broker.history(intent.channel, HistoryFilter(limit=1, reverse=True), meta_ttl)
        if intent.epoch and intent.epoch != page.top.epoch:
            return [], page.top, False
        latest = page.publications[0] if page.publications else None
        recovered = is_cache_recovered(latest, page.top.offset)
        pubs = [latest] if recovered and latest is not None and latest.offset > intent.offset else []
        return pubs, page.top, recovered
    since = StreamPosition(intent.offset, intent.epoch)
    limit = node.config.client_recovery_max_publication_limit
    try:
        page = await node.broker.history(intent.channel, HistoryFilter(since=since, limit=limit), meta_ttl)
    except UnrecoverablePosition:
        return [], await node.stream_top(intent.channel, opts), False
    recovered = is_stream_recovered(intent.offset, page.publications, page.top.offset)
    return (page.publications if recovered else []), page.top, recovered


def release_buffer(client: Client, sub: Subscription) -> None:
    """After the reply: deliver what arrived while subscribing, in offset order, gaps detected."""
    buffered, sub.buffer = sub.buffer, None
    if not buffered or client.subs.get(sub.channel) is not sub:
        return
    pubs = [item for item in buffered if isinstance(item, Publication)]
    if sub.positioned:
        pubs, gapless = merge_buffered(sub.offset, pubs)
        if not gapless:
            client.insufficient_state(sub)
            return
        if pubs:
            sub.offset = pubs[-1].offset
    for pub in pubs:
        client.enqueue(encode_publication_push(sub.channel, pub))
    for item in buffered:
        if isinstance(item, bytes):
            client.enqueue(item)
