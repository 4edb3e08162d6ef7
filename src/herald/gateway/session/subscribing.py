"""Opening a subscription: options, positioning, recovery, presence, join — in a safe order.

Shared by client-side subscribes, server-side subscriptions at connect (``connect.subs``)
and live server API subscriptions. The order matters (spec §6.3): index the subscription in
the hub first (publications start being buffered on it), then read the stream top or
recover history, then reply, then :func:`release_buffer` delivers what arrived meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from msgspec import structs

from herald import errors
from herald.gateway import access
from herald.gateway.codecs.messages import Publication, StreamPosition, SubscribeResult, raw, ttl_until
from herald.gateway.config import ChannelOptions
from herald.gateway.engines.broker import HistoryFilter, UnrecoverablePosition
from herald.gateway.hub import Subscription, encode_delta, encode_full
from herald.gateway.node import Node
from herald.gateway.recovery import cache_recovery, is_stream_recovered, merge_buffered
from herald.gateway.session import proxied
from herald.gateway.session.watch import watch_expiry, watch_position

if TYPE_CHECKING:
    from herald.gateway.session.client import Client


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
    # Subscribe flag bit 2 (spec §2.2): answer error 112 instead of recovered:false.
    reject_unrecovered: bool = False
    delta: str = ""  # the delta type asked for ("fossil"), negotiated if the namespace allows it


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
    sub.delta = bool(intent.delta) and intent.delta in opts.allowed_delta_types
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
    result = SubscribeResult(was_recovering=intent.recover, delta=sub.delta)
    result.data = raw(intent.data)
    info = client.client_info(sub.chan_info)
    try:
        await node.add_subscription(sub)
        if positioned:
            await _position(node, opts, intent, sub, result)
            if sub.delta and result.publications:
                result.publications = _delta_chain(client, sub, result.publications)
        await node.announce_join(sub, info)
    except BaseException:
        # Nothing of a failed subscribe may stay: a retry (the SDK's, after a temporary error)
        # must not find it "already subscribed", nor the node keep buffering for it.
        if client.subs.get(channel) is sub:
            del client.subs[channel]
        await node.withdraw_subscription(sub, info)
        raise
    if client.closed or client.subs.get(channel) is not sub:
        # The connection ended (or dropped this subscription) while we awaited the engine; its
        # teardown ran before our presence entry existed, so take it back here.
        await node.remove_subscription(sub, info)
        return sub, result
    if sub.expires_at is not None and proxied.sub_refresh_proxied(node, opts):
        proxied.watch_sub_refresh(client, sub)  # the server refreshes; the reply says nothing (proxy.md §6)
    elif sub.expires_at is not None:
        result.expires = True
        result.ttl = ttl_until(sub.expires_at, time.time())
        watch_expiry(client, sub)
    if positioned:
        watch_position(client, sub)
    return sub, result


async def _position(
    node: Node, opts: ChannelOptions, intent: SubscribeIntent, sub: Subscription, result: SubscribeResult
) -> None:
    """Fill the reply's stream position, recovering missed publications when asked (spec §6.2, §6.3)."""
    result.positioned = True
    result.recoverable = sub.recoverable
    if intent.recover and sub.recoverable:
        pubs, top, recovered = await _recover(node, opts, intent)
        if not recovered and intent.reject_unrecovered:
            # The SDK asked (subscribe flag 2, its get_state callback) to be told with an error
            # rather than recovered:false, so it reloads the app's state and subscribes again.
            raise errors.ERROR_UNRECOVERABLE_POSITION
        result.recovered = recovered
        if recovered:
            result.publications = pubs
            result.offset = intent.offset  # the SDK advances with each publication (spec §6.3)
        else:
            result.offset = top.offset  # no partial set is ever presented as complete
    else:
        top = await node.stream_top(intent.channel, opts)
        result.offset = top.offset
    result.epoch = top.epoch
    sub.offset, sub.epoch = top.offset, top.epoch


async def _recover(
    node: Node, opts: ChannelOptions, intent: SubscribeIntent
) -> tuple[list[Publication], StreamPosition, bool]:
    """Read what the client missed; (publications, stream top, recovered)."""
    if opts.force_recovery_mode == "cache":
        page = await node.read_stream(intent.channel, HistoryFilter(limit=1, reverse=True), opts)
        latest = page.publications[0] if page.publications else None
        pubs, recovered = cache_recovery(latest, page.top, StreamPosition(intent.offset, intent.epoch))
        return pubs, page.top, recovered
    since = StreamPosition(intent.offset, intent.epoch)
    # At most client_recovery_max_publication_limit: a client further behind is not recovered.
    limit = node.config.client_recovery_max_publication_limit
    try:
        page = await node.read_stream(intent.channel, HistoryFilter(since=since, limit=limit), opts)
    except UnrecoverablePosition:  # another epoch: the stream the client knew is gone
        return [], await node.stream_top(intent.channel, opts), False
    recovered = is_stream_recovered(intent.offset, page.publications, page.top.offset)
    return (page.publications if recovered else []), page.top, recovered


def release_buffer(client: Client, sub: Subscription) -> None:
    """After the reply: deliver what arrived while subscribing, in offset order, gaps detected."""
    buffered, sub.buffer = sub.buffer, None
    if not buffered or client.subs.get(sub.channel) is not sub:
        return
    pubs: list[Publication] = []
    for item in buffered:
        if isinstance(item, tuple):
            pub, epoch = item
            if sub.positioned and pub.offset and epoch != sub.epoch:
                sub.report_lost()  # the stream was replaced while we read it
                return
            pubs.append(pub)
    if sub.positioned:
        pubs, gapless = merge_buffered(sub.offset, pubs)
        if not gapless:
            sub.report_lost()
            return
        sub.offset = max([sub.offset, *(pub.offset for pub in pubs)])
    for pub in pubs:
        client.enqueue(encode_for(client, sub, pub))
    for item in buffered:
        if isinstance(item, bytes):
            client.enqueue(item)


def encode_for(client: Client, sub: Subscription, pub: Publication) -> bytes:
    """One publication for one subscriber outside a broadcast (after its subscribe reply)."""
    codec = client.codec
    if not sub.delta:
        return codec.encode_publication_push(sub.channel, pub)
    current = bytes(pub.data)
    data = None
    if sub.delta_base is not None:
        patch = client.node.hub.delta_between(sub.channel, sub.delta_base, current)
        data = encode_delta(codec, sub.channel, pub, patch)
    sub.delta_base = current
    return data if data is not None else encode_full(codec, sub.channel, pub)


def _delta_chain(client: Client, sub: Subscription, pubs: list[Publication]) -> list[Publication]:
    """Recovered publications for a delta subscriber: the first whole, each next one a delta
    against the one before (spec §2.2). Deltas are shared by every subscriber recovering the
    same publications (a reconnect storm computes each once)."""
    codec, hub = client.codec, client.node.hub
    chain: list[Publication] = []
    base: bytes | None = None
    for pub in pubs:
        current = bytes(pub.data)
        data = None
        if base is not None:
            data = codec.delta_data(hub.delta_between(sub.channel, base, current))
            if data is not None:
                chain.append(structs.replace(pub, data=data, delta=True))
        if data is None:
            whole = codec.delta_data(current)
            chain.append(pub if whole is None else structs.replace(pub, data=whole))
        base = current
    sub.delta_base = base
    return chain
