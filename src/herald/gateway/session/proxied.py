"""A session's proxy hooks: asking the application backend (proxy.md) at connect, subscribe,
publish and rpc, and refreshing connections and subscriptions server-side.

When each hook runs (proxy.md §5, §7, §6):

* connect: only for a connect command **without a token** while ``proxy_connect_endpoint`` is
  set; a token always takes the JWT path, with no I/O.
* subscribe: for a channel whose namespace has ``proxy_subscribe``, unless something that needs
  no I/O already allows it: a subscription token, the connection token's grant list
  (decisions §1), or a ``#`` user-limited channel naming the user. ``$`` private channels
  still need a subscription token (103).
* publish: for a channel whose namespace has ``proxy_publish``; it replaces the
  ``allow_publish_*`` checks, and the result may replace the data.
* rpc: every client ``rpc`` goes to ``proxy_rpc_endpoint`` (except ``rpc_ping``'s method).
* refresh: with ``proxy_refresh_endpoint`` set, every connection with an expiry is refreshed by
  the server at its expiry time (the connect reply says it does not expire, so the SDK never
  sends ``refresh``); a failed call retries in 60 s.
* sub_refresh: likewise for subscriptions with an expiry in a namespace with
  ``proxy_sub_refresh``, checked ``client_expired_sub_close_delay`` after the expiry.

Which endpoint: the event's ``proxy_*_endpoint``, or in ``granular_proxy_mode`` the named proxy
the config gives for it (``connect_proxy_name``, a namespace's ``subscribe_proxy_name``,
``rpc_namespaces``...; see ``Proxy``).

What the client sees on failure (timeout, connection error, a status other than 200, a body
that is not the expected JSON): error 100 (temporary) for connect, subscribe, publish and rpc;
a connect that finds every proxy slot busy is closed with 3013 (a reconnect code).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypedDict

from msgspec import Raw

from herald import errors
from herald.gateway import access
from herald.gateway.codecs.messages import EMPTY_RAW, ConnectRequest
from herald.gateway.config import ChannelOptions
from herald.gateway.hub import Subscription
from herald.gateway.node import Node
from herald.gateway.proxy import Endpoint, Proxy, ProxyBusy, ProxyFailure, messages, outcomes
from herald.gateway.timers import weakly
from herald.tokens import SubscriptionOptions

if TYPE_CHECKING:
    from herald.gateway.session.client import Client
    from herald.gateway.session.subscribing import SubscribeIntent

log = logging.getLogger(__name__)

# After a failed refresh call the connection (or subscription) lives on and is asked about
# again this much later (proxy.md §6).
RETRY_AFTER: Final = 60.0
# A refresh answer's expiry is capped this far ahead (proxy.md §6).
MAX_EXTENSION: Final = 365 * 24 * 3600.0


def _proxy(node: Node) -> Proxy:
    assert node.proxy is not None
    return node.proxy


def connect_proxied(node: Node) -> bool:
    return node.proxy is not None and node.proxy.connect_endpoint() is not None


def rpc_proxied(node: Node) -> bool:
    """Whether client RPC goes to the backend at all (which method where: Proxy.rpc_endpoint)."""
    proxy = node.proxy
    if proxy is None:
        return False
    cfg = node.config
    return bool(cfg.rpc_proxy_name or cfg.rpc_namespaces) if proxy.granular else "rpc" in proxy.endpoints


class _Common(TypedDict):
    client: str
    transport: str
    protocol: str
    encoding: str


def _common(client: Client, endpoint: Endpoint) -> _Common:
    return {
        "client": client.id,
        "transport": client.transport,
        "protocol": "protobuf" if client.codec.binary else "json",
        "encoding": "binary" if endpoint.binary else "json",
    }


def _meta(client: Client, endpoint: Endpoint) -> Raw:
    return Raw(client.meta) if endpoint.include_meta and client.meta else EMPTY_RAW


def _failed(client: Client, kind: str, exc: ProxyFailure) -> errors.ReplyError:
    log.warning("client %s: %s proxy failed: %s", client.id, kind, exc)
    return errors.ERROR_INTERNAL


# --------------------------------------------------------------------------- connect


@dataclass(slots=True)
class ConnectGrant:
    """What the backend decided about a connection (proxy.md §3.1)."""

    user: str
    expires_at: int | None
    info: bytes | None
    data: bytes | None
    # Server-side subscriptions: channel -> (options, expiry)
    subs: dict[str, tuple[SubscriptionOptions, int | None]] = field(default_factory=dict)
    meta: bytes | None = None


async def connect(client: Client, req: ConnectRequest, now: float) -> ConnectGrant | None:
    """Ask the backend about a token-less connect; None when it answered without a result."""
    proxy = _proxy(client.node)
    endpoint = proxy.connect_endpoint()
    assert endpoint is not None
    try:
        data, b64data = outcomes.request_data(bytes(req.data) or None, endpoint.binary)
        body = messages.ConnectRequest(
            **_common(client, endpoint),
            name=req.name,
            version=req.version,
            data=data,
            b64data=b64data,
            channels=sorted(req.subs or ()),
        )
        resp = await proxy.call("connect", endpoint, body, client.headers, messages.ConnectResponse)
        if resp.disconnect is not None:  # disconnect wins over error (proxy.md §2)
            raise outcomes.disconnect(resp.disconnect)
        if resp.error is not None:
            client.unusable = True
            raise outcomes.error(resp.error)
        result = resp.result
        if result is None:
            return None
        grant = ConnectGrant(
            user=result.user,
            expires_at=result.expire_at if result.expire_at > 0 else None,
            info=outcomes.payload(result.info, result.b64info),
            data=outcomes.payload(result.data, result.b64data),
            meta=outcomes.payload(result.meta, ""),
        )
        for channel in result.channels or ():
            grant.subs[channel] = (SubscriptionOptions(), None)
        for channel, opts in (result.subs or {}).items():
            sub_options = SubscriptionOptions(
                info=outcomes.payload(opts.info, opts.b64info),
                data=outcomes.payload(opts.data, opts.b64data),
                override=outcomes.override(opts.override),
            )
            grant.subs[channel] = (sub_options, opts.expire_at if opts.expire_at > 0 else None)
    except ProxyBusy as exc:
        client.log_detail = f"connect proxy: {exc}"  # for the refusal's log line (connlog.py)
        raise errors.DISCONNECT_TOO_MANY_REQUESTS from None
    except ProxyFailure as exc:
        client.unusable = True  # the SDK closes and reconnects after a connect error
        raise _failed(client, "connect", exc) from None
    if grant.expires_at is not None and grant.expires_at <= now:
        client.unusable = True
        raise errors.ERROR_EXPIRED
    return grant


# --------------------------------------------------------------------------- refresh


def server_side_refresh(node: Node) -> bool:
    """With a refresh proxy, every expiring connection is refreshed by the server (proxy.md §6)."""
    return node.proxy is not None and node.proxy.refresh_endpoint() is not None


def schedule_refresh(client: Client) -> None:
    if client.expires_at is not None:
        client.node.timers.call_later(client.expires_at - time.time(), weakly(client, _refresh_due))


def _refresh_due(client: Client) -> None:
    if client.closed or client.expires_at is None:
        return
    if time.time() < client.expires_at:
        schedule_refresh(client)  # moved meanwhile (e.g. by the server API)
        return
    client.node.spawn(_refresh(client))


async def _refresh(client: Client) -> None:
    proxy = _proxy(client.node)
    endpoint = proxy.refresh_endpoint()
    assert endpoint is not None
    body = messages.RefreshRequest(**_common(client, endpoint), user=client.user, meta=_meta(client, endpoint))
    try:
        resp = await proxy.call("refresh", endpoint, body, client.headers, messages.RefreshResponse)
    except ProxyFailure as exc:
        # The backend is away: keep the connection and ask again later (proxy.md §4, §6).
        log.warning("client %s: refresh proxy failed (%s); retrying in %gs", client.id, exc, RETRY_AFTER)
        if not client.closed:
            client.expires_at = time.time() + RETRY_AFTER
            schedule_refresh(client)
        return
    if client.closed:
        return
    now = time.time()
    result = resp.result
    if result is None or result.expired or result.expire_at <= now:
        client.disconnect(errors.DISCONNECT_EXPIRED)
        return
    try:
        info = outcomes.payload(result.info, result.b64info)
        meta = outcomes.payload(result.meta, "")
    except ProxyFailure as exc:
        log.warning("client %s: refresh proxy answer unusable: %s", client.id, exc)
        client.disconnect(errors.DISCONNECT_SERVER_ERROR)
        return
    if info is not None:
        client.info = info
    if meta is not None:
        client.meta = meta
    client.expires_at = min(float(result.expire_at), now + MAX_EXTENSION)
    schedule_refresh(client)


# --------------------------------------------------------------------------- subscribe


def subscribe_proxied(client: Client, opts: ChannelOptions, channel: str) -> bool:
    """Whether a token-less subscribe asks the backend (see the module docstring for the order)."""
    cfg = client.node.config
    proxy = client.node.proxy
    if proxy is None or not proxy.channel_proxied("subscribe", opts):
        return False
    if access.is_private(cfg, channel) or channel in client.grants:
        return False
    return not (access.is_user_limited(cfg, opts, channel) and access.user_limited_allows(cfg, channel, client.user))


async def subscribe(client: Client, opts: ChannelOptions, intent: SubscribeIntent, data: bytes | None) -> None:
    """Ask the backend; fill ``intent`` from its result or raise what the client gets."""
    proxy = _proxy(client.node)
    endpoint = proxy.channel_endpoint("subscribe", opts)
    if endpoint is None:
        raise errors.ERROR_NOT_AVAILABLE  # proxy_subscribe without an endpoint (proxy.md §1.1)
    try:
        payload, b64data = outcomes.request_data(data, endpoint.binary)
        body = messages.SubscribeRequest(
            **_common(client, endpoint),
            user=client.user,
            channel=intent.channel,
            data=payload,
            b64data=b64data,
            meta=_meta(client, endpoint),
        )
        resp = await proxy.call("subscribe", endpoint, body, client.headers, messages.SubscribeResponse)
        outcomes.raise_refusal(resp)
        result = resp.result or messages.SubscribeResult()  # no result: allowed (proxy.md §3.3)
        intent.chan_info = outcomes.payload(result.info, result.b64info)
        intent.data = outcomes.payload(result.data, result.b64data)
    except ProxyFailure as exc:
        raise _failed(client, "subscribe", exc) from None
    if result.expire_at > 0 and result.expire_at <= time.time():
        raise errors.ERROR_EXPIRED
    intent.granted_by = "proxy"
    intent.override = outcomes.override(result.override)
    intent.expires_at = result.expire_at if result.expire_at > 0 else None
    # Recovery, positioning and join/leave come from the namespace and the override only; the
    # client's own flags are not applied on the proxy path (proxy.md §7).
    intent.positioned = intent.recoverable = intent.join_leave = False


# --------------------------------------------------------------------------- publish


@dataclass(slots=True)
class PublishDecision:
    data: bytes
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""


def publish_proxied(node: Node, opts: ChannelOptions) -> bool:
    return node.proxy is not None and node.proxy.channel_proxied("publish", opts)


async def publish(client: Client, opts: ChannelOptions, channel: str, data: bytes) -> PublishDecision:
    proxy = _proxy(client.node)
    endpoint = proxy.channel_endpoint("publish", opts)
    if endpoint is None:
        raise errors.ERROR_NOT_AVAILABLE
    try:
        payload, b64data = outcomes.request_data(data, endpoint.binary)
        body = messages.PublishRequest(
            **_common(client, endpoint),
            user=client.user,
            channel=channel,
            data=payload,
            b64data=b64data,
            meta=_meta(client, endpoint),
        )
        resp = await proxy.call("publish", endpoint, body, client.headers, messages.PublishResponse)
        outcomes.raise_refusal(resp)
        result = resp.result or messages.PublishResult()
        replaced = outcomes.payload(result.data, result.b64data, b64_first=False)
    except ProxyFailure as exc:
        raise _failed(client, "publish", exc) from None
    return PublishDecision(
        data=replaced if replaced is not None else data,
        skip_history=result.skip_history,
        tags=result.tags,
        idempotency_key=result.idempotency_key,
    )


# --------------------------------------------------------------------------- sub_refresh


def sub_refresh_proxied(node: Node, opts: ChannelOptions) -> bool:
    """Server-side subscription refresh: the namespace asks for it and the endpoint is set."""
    proxy = node.proxy
    return (
        proxy is not None
        and proxy.channel_proxied("sub_refresh", opts)
        and bool(proxy.channel_endpoint("sub_refresh", opts))
    )


def watch_sub_refresh(client: Client, sub: Subscription) -> None:
    if sub.expires_at is None:
        return
    due = sub.expires_at + client.node.config.client_expired_sub_close_delay - time.time()
    client.node.timers.call_later(due, weakly(client, _sub_refresh_due, sub))


def _live(client: Client, sub: Subscription) -> bool:
    return not client.closed and client.subs.get(sub.channel) is sub


def _sub_refresh_due(client: Client, sub: Subscription) -> None:
    if not _live(client, sub) or sub.expires_at is None:
        return
    if time.time() < sub.expires_at + client.node.config.client_expired_sub_close_delay:
        watch_sub_refresh(client, sub)
        return
    client.node.spawn(_sub_refresh(client, sub))


async def _sub_refresh(client: Client, sub: Subscription) -> None:
    proxy = _proxy(client.node)
    opts = client.node.config.channel_options_for(sub.channel)
    endpoint = proxy.channel_endpoint("sub_refresh", opts) if opts is not None else None
    if endpoint is None:
        return  # the config cannot change under a running node; a channel never loses its proxy
    body = messages.SubRefreshRequest(
        **_common(client, endpoint), user=client.user, channel=sub.channel, meta=_meta(client, endpoint)
    )
    try:
        resp = await proxy.call("sub_refresh", endpoint, body, client.headers, messages.SubRefreshResponse)
        result = resp.result
        info = outcomes.payload(result.info, result.b64info) if result is not None else None
    except ProxyFailure as exc:
        log.warning("client %s: sub_refresh proxy for %s failed (%s)", client.id, sub.channel, exc)
        if _live(client, sub):
            sub.expires_at = int(time.time() + RETRY_AFTER)
            watch_sub_refresh(client, sub)
        return
    if not _live(client, sub):
        return
    now = time.time()
    if result is None or result.expired or (result.expire_at and result.expire_at < now):
        # The subscription ends (proxy.md §6): the SDK resubscribes a client-side one (2501),
        # which asks the subscribe proxy again; a server-side one needs a new connection.
        if sub.server_side:
            client.disconnect(errors.DISCONNECT_SUBSCRIPTION_EXPIRED)
        else:
            client.drop_subscription(sub, *errors.UNSUBSCRIBE_EXPIRED)
        return
    if info is not None:
        sub.chan_info = info
    if not result.expire_at:
        sub.expires_at = None  # expire_at 0 without expired: the expiry is removed
        return
    sub.expires_at = int(min(result.expire_at, now + MAX_EXTENSION))
    watch_sub_refresh(client, sub)


# --------------------------------------------------------------------------- rpc


async def rpc(client: Client, method: str, data: bytes | None) -> bytes | None:
    """The backend's answer to a client rpc: its data, or an error/disconnect raised."""
    proxy = _proxy(client.node)
    endpoint = proxy.rpc_endpoint(method)  # 104 / 108 for a method no proxy serves
    try:
        payload, b64data = outcomes.request_data(data, endpoint.binary)
        body = messages.RPCRequest(
            **_common(client, endpoint),
            user=client.user,
            method=method,
            data=payload,
            b64data=b64data,
            meta=_meta(client, endpoint),
        )
        resp = await proxy.call("rpc", endpoint, body, client.headers, messages.RPCResponse)
        outcomes.raise_refusal(resp)
        result = resp.result
        return outcomes.payload(result.data, result.b64data) if result is not None else None
    except ProxyFailure as exc:
        raise _failed(client, "rpc", exc) from None
