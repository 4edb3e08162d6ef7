"""Per-subscription deadlines on the node's timer wheel: token expiry and position checks.

* Expiry (spec §4.5): a subscription whose token expired and was not refreshed within
  ``client_expired_sub_close_delay`` ends — an unsubscribe push 2501 for a client-side
  subscription, disconnect 3006 for a server-side one.
* Position check (spec §6.2): every ``client_channel_position_check_delay`` a positioned
  subscription is compared with the stream top; a replaced stream or publications it never got
  mean insufficient state, so the SDK resubscribes and recovers.

Callbacks re-check that the subscription is still the live one, so none needs cancelling.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING

from herald import errors
from herald.gateway.hub import Subscription
from herald.gateway.timers import weakly

if TYPE_CHECKING:
    from herald.gateway.session.client import Client

log = logging.getLogger(__name__)


def watch_expiry(client: Client, sub: Subscription) -> None:
    if sub.expires_at is None:
        return
    delay = client.node.config.client_expired_sub_close_delay
    # Hours away, perhaps: held weakly (as every check here), so an ended connection is not kept.
    check = weakly(client, _check_expired, weakref.ref(sub))
    client.node.timers.call_later(sub.expires_at + delay - time.time(), check)


def _check_expired(client: Client, sub_ref: weakref.ref[Subscription]) -> None:
    sub = sub_ref()
    if sub is None or client.closed or client.subs.get(sub.channel) is not sub or sub.expires_at is None:
        return
    if time.time() < sub.expires_at + client.node.config.client_expired_sub_close_delay:
        watch_expiry(client, sub)  # refreshed meanwhile
    elif sub.server_side:
        client.disconnect(errors.DISCONNECT_SUBSCRIPTION_EXPIRED)
    else:
        client.drop_subscription(sub, *errors.UNSUBSCRIBE_EXPIRED)


def watch_position(client: Client, sub: Subscription) -> None:
    """Compare a positioned subscription with the stream top every position-check delay."""
    delay = client.node.config.client_channel_position_check_delay
    if delay > 0 and sub.positioned:
        _check_later(client, sub, delay)


def check_position_now(client: Client, sub: Subscription) -> None:
    """One extra check at once, besides the periodic ones: the engine re-established the
    channel's PUB/SUB after a loss, so publications may have been missed meanwhile."""
    _check_position(client, weakref.ref(sub), 0, False)


def _check_later(client: Client, sub: Subscription, delay: float, behind: int = 0, periodic: bool = True) -> None:
    # The wheel holds the connection and the subscription weakly: a closed one is not kept alive.
    client.node.timers.call_later(delay, weakly(client, _check_position, weakref.ref(sub), behind, periodic))


def _check_position(client: Client, sub_ref: weakref.ref[Subscription], behind: int, periodic: bool) -> None:
    sub = sub_ref()
    if sub is None or client.closed or client.subs.get(sub.channel) is not sub or sub.lost:
        return  # the subscription ended: its checks end with it
    client.node.spawn(_verify_position(client, sub, behind, periodic))


async def _verify_position(client: Client, sub: Subscription, behind: int, periodic: bool) -> None:
    """A stream replaced (new epoch) or publications this subscriber never got ⇒ insufficient state.

    ``behind`` is a stream top seen ahead of the subscription by the previous check: a
    publication may still have been on its way then, so only a second look that finds the
    subscription still short of it counts as a miss. A one-off check (not ``periodic``) does not
    schedule the next periodic one: that chain goes on by itself.
    """
    if behind and sub.offset < behind:
        sub.report_lost()
        return
    node = client.node
    opts = node.config.channel_options_for(sub.channel)
    if opts is None:
        return
    if sub.buffer is not None and not periodic:
        # Still subscribing (its stream read may predate the loss): look once it is live.
        _check_later(client, sub, _grace(client), periodic=False)
        return
    try:
        top = await node.stream_top(sub.channel, opts)
    except Exception:
        log.warning("client %s: position check of %s failed; retrying later", client.id, sub.channel, exc_info=True)
        if periodic:
            watch_position(client, sub)
        return
    if client.closed or client.subs.get(sub.channel) is not sub or sub.lost:
        return
    if sub.buffer is None and (top.epoch != sub.epoch or top.offset < sub.offset):
        sub.report_lost()
    elif sub.buffer is None and top.offset > sub.offset:
        _check_later(client, sub, _grace(client), top.offset, periodic)
    elif periodic:
        watch_position(client, sub)


def _grace(client: Client) -> float:
    return min(1.0, client.node.config.client_channel_position_check_delay or 1.0)
