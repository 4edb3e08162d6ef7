"""The node: what one gateway process does on behalf of its connections and the server API.

Theory of operation
-------------------
* Publishing goes ``node.publish → broker.publish`` (history append + PUB/SUB, atomic per
  channel) and comes back through :meth:`Node.handle_publication` on every node that has
  subscribers, where the hub encodes it once and queues the same bytes on each connection.
* Operations that target connections anywhere in the cluster (server API ``disconnect``,
  ``unsubscribe``, ``subscribe``, ``refresh``, token revocation) are applied to this node's
  connections at once and sent to the other nodes as control messages.
* The node owns the shared machinery a connection needs: the hub, the flusher that writes
  queued messages once per loop tick, the timer wheel for pings and deadlines, the token
  verifier and the revocation list. It never touches sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Protocol

import msgspec
from msgspec import Raw, structs

from herald import errors
from herald.errors import Disconnect, ReplyError
from herald.gateway import access
from herald.gateway.codecs.messages import ClientInfo, Publication, StreamPosition
from herald.gateway.config import ChannelOptions, Config
from herald.gateway.control import Control, NodeStats, Session, apply_control, decode_controls, invalidate_user, revoke
from herald.gateway.engines.broker import (
    Broker,
    EngineUnavailable,
    HistoryFilter,
    HistoryPage,
    PresenceManager,
    PublishOptions,
    PublishResult,
    UnrecoverablePosition,
)
from herald.gateway.hub import Flusher, Hub, Subscription
from herald.gateway.revocation import Revocations
from herald.gateway.stats import Counters
from herald.gateway.timers import TimerWheel
from herald.tokens import TokenVerifier, VerifierKeys

if TYPE_CHECKING:
    from herald.gateway.proxy import Proxy

log = logging.getLogger(__name__)

VERSION = "0.1.0"


# Nodes announce themselves this often; one not heard from for NODE_TTL is gone (spec §9.1).
NODE_HEARTBEAT = 3.0
NODE_TTL = 7.0
SURVEY_TIMEOUT = 1.0
# How long a stream read for subscribers waits for identical reads to join it (remote engines).
READ_GATHER = 0.002


class RevocationStore(Protocol):
    """Where revocations outlive a node (Redis); absent for the single-node memory engine."""

    async def revoke(self, jti: str, expire_at: int, scope: str) -> None: ...

    async def invalidate_user(self, user: str, issued_before: int, expire_at: int, scope: str) -> None: ...

    async def load(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], tuple[int, int]]]:
        """((jti, scope) → expire_at, (user, scope) → (issued_before, expire_at))."""


class Node:
    def __init__(
        self,
        config: Config,
        broker: Broker,
        presence: PresenceManager,
        *,
        name: str = "",
        revocation_store: RevocationStore | None = None,
    ) -> None:
        self.config = config
        self.broker = broker
        self.presence_manager = presence
        self.revocation_store = revocation_store
        self.uid = str(uuid.uuid4())
        self.name = name or config.name or self.uid
        self.version = VERSION
        self.hub: Hub[Session] = Hub()
        self.flusher = Flusher()
        self.timers = TimerWheel()
        self.revocations = Revocations()
        self.verifier = TokenVerifier(
            VerifierKeys(
                hmac_secret=config.token_hmac_secret_key,
                rsa_public_key=config.token_rsa_public_key,
                ecdsa_public_key=config.token_ecdsa_public_key,
                audience=config.token_audience,
                issuer=config.token_issuer,
                allow_without_exp=config.token_allow_without_exp,
                max_size=config.token_max_size,
                scoped_hmac_secrets=tuple((k.key, k.channel_prefix) for k in config.token_hmac_secret_keys),
            ),
            cache_size=config.token_cache_size,
            in_scope=config.in_scope,
        )
        self.started_at = time.time()
        self.shutting_down = False
        self.open_websockets = 0  # upgraded sockets whose transport has not closed yet
        self._no_websockets: asyncio.Event | None = None
        self.counters = Counters()
        self._background: set[asyncio.Task[None]] = set()
        self._engine_failures = FailureLog("engine unavailable: background operations failed")
        self.peers: dict[str, tuple[NodeStats, float]] = {}  # uid -> (stats, monotonic time heard)
        self._reads: dict[tuple[str, HistoryFilter], asyncio.Future[HistoryPage]] = {}
        self._control_out: list[bytes] = []
        self._read_gather = READ_GATHER if config.engine != "memory" else 0.0
        self._surveys: dict[str, tuple[asyncio.Future[None], dict[str, int], set[str]]] = {}
        # Control operations served by other parts (a transport's), by op name.
        self.control_handlers: dict[str, Callable[[Control], None]] = {}
        # Calls to the application backend (proxy.md); set by app.py when an endpoint is configured.
        self.proxy: Proxy | None = None

    async def start(self) -> None:
        if self.revocation_store is not None:
            try:
                await self._load_revocations(self.revocation_store)
            except EngineUnavailable as exc:
                log.warning("revocations not loaded yet (%s); retrying in the background", exc)
                self.spawn(self._load_revocations_when_possible(self.revocation_store))
        await self.broker.start(self)
        self.timers.start()
        self.timers.call_later(60.0, self._sweep)
        self._heartbeat()
        self.timers.call_later(self.config.client_presence_update_interval, self._refresh_presence)

    async def _load_revocations(self, store: RevocationStore) -> None:
        """Revocations made before this node started; connections that hold a token revoked by
        them (accepted while the engine was unreachable) are closed as a live revocation does."""
        revoked, invalidated = await store.load()
        for (jti, scope), expire_at in revoked.items():
            revoke(self.hub, self.revocations, jti, expire_at, scope)
        for (user, scope), (issued_before, expire_at) in invalidated.items():
            invalidate_user(self.hub, self.revocations, user, issued_before, expire_at, scope)

    async def _load_revocations_when_possible(self, store: RevocationStore) -> None:
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            try:
                await self._load_revocations(store)
            except EngineUnavailable:
                delay = min(delay * 2, 10.0)
                continue
            log.info("revocations loaded")
            return

    async def close(self) -> None:
        await self.timers.stop()
        await self.broker.close()

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run a fire-and-forget coroutine, keeping a reference and logging its failure."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, EngineUnavailable):
            self._engine_failures.note(exc)  # expected in an outage: counted, not a traceback each
        elif exc is not None:
            log.error("background task failed", exc_info=exc)

    def _sweep(self) -> None:
        self.revocations.sweep()
        self.timers.call_later(60.0, self._sweep)

    def stats(self) -> NodeStats:
        hub = self.hub
        return NodeStats(
            uid=self.uid,
            name=self.name,
            version=self.version,
            num_clients=hub.num_clients,
            num_users=hub.num_users,
            num_channels=hub.num_channels,
            num_subs=hub.num_subs,
            uptime=int(time.time() - self.started_at),
        )

    def _heartbeat(self) -> None:
        now = time.monotonic()
        for uid in [uid for uid, (_, heard) in self.peers.items() if now - heard > NODE_TTL]:
            del self.peers[uid]
        self.spawn(self.broker.publish_control(msgspec.json.encode(self._heartbeat_message())))
        self.timers.call_later(NODE_HEARTBEAT, self._heartbeat)

    def _heartbeat_message(self) -> Control:
        return Control(op="node", node=self.uid, stats=self.stats())

    def nodes(self) -> list[NodeStats]:
        """This node and every peer heard from recently."""
        now = time.monotonic()
        return [self.stats()] + [stats for stats, heard in self.peers.values() if now - heard <= NODE_TTL]

    def _refresh_presence(self) -> None:
        """Presence entries expire in shared engines unless renewed (spec §9.1)."""
        for session in self.hub.all_clients():
            for sub in session.subs.values():
                if sub.presence and sub.buffer is None:
                    info = session.client_info(sub.chan_info)
                    self.spawn(
                        self.presence_manager.add_presence(
                            sub.channel, info.client, info, self.config.global_presence_ttl
                        )
                    )
        self.timers.call_later(self.config.client_presence_update_interval, self._refresh_presence)

    async def survey_channels(self) -> dict[str, int]:
        """Subscriber counts per channel across the cluster: ask every known peer, wait briefly."""
        counts = dict(self.hub.channels())
        now = time.monotonic()
        expected = {uid for uid, (_, heard) in self.peers.items() if now - heard <= NODE_TTL}
        if not expected:
            return counts
        request = str(uuid.uuid4())
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._surveys[request] = (done, counts, expected)
        try:
            await self.broker.publish_control(msgspec.json.encode(Control(op="survey", node=self.uid, request=request)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done, SURVEY_TIMEOUT)
        finally:
            del self._surveys[request]
        return counts

    # --- channel options

    def options(self, channel: str) -> ChannelOptions:
        """A channel's options, checking its name first (every command and API method on a
        channel comes through here): 107 for a bad name, 102 for an unknown namespace."""
        access.check_channel_name(self.config, channel)
        opts = self.config.channel_options_for(channel)
        if opts is None:
            raise errors.ERROR_UNKNOWN_CHANNEL
        return opts

    def publish_options(self, opts: ChannelOptions, *, skip_history: bool, idempotency_key: str) -> PublishOptions:
        if skip_history or not opts.history_enabled:
            return PublishOptions(idempotency_key=idempotency_key)
        return PublishOptions(
            history_size=opts.history_size,
            history_ttl=opts.history_ttl,
            history_meta_ttl=self.config.history_meta_ttl(opts),
            idempotency_key=idempotency_key,
        )

    # --- BrokerEventHandler

    def handle_publication(self, channel: str, pub: Publication, epoch: str) -> None:
        # ``delta`` on a stored publication marks it for delta delivery; on the wire it means
        # "this is a delta", so it never leaves the node as it came.
        if pub.delta:
            self.hub.broadcast_publication(channel, structs.replace(pub, delta=False), epoch, delta=True)
        else:
            self.hub.broadcast_publication(channel, pub, epoch)

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        opts = self.config.channel_options_for(channel)
        self.hub.broadcast_join_leave(channel, info, join=True, force=bool(opts and opts.force_push_join_leave))

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        opts = self.config.channel_options_for(channel)
        self.hub.broadcast_join_leave(channel, info, join=False, force=bool(opts and opts.force_push_join_leave))

    def handle_resubscribed(self, channels: Collection[str]) -> None:
        """The engine's PUB/SUB for these channels came back after a loss (a Redis restart, a
        failover, a stalled connection): publications made meanwhile never arrived here. Check
        every positioned subscriber now rather than at the next publication or periodic check,
        so it recovers them, or is told ``recovered: false``, within a second."""
        wanted = set(channels)
        for session in self.hub.all_clients():
            for sub in session.subs.values():
                if sub.positioned and sub.channel in wanted:
                    session.check_position(sub)

    def handle_control(self, data: bytes) -> None:
        try:
            controls = decode_controls(data)
        except (msgspec.MsgspecError, RecursionError):
            log.warning("dropping a malformed control message")
            return
        for control in controls:
            self._handle_one_control(control)

    def _handle_one_control(self, control: Control) -> None:
        if control.node == self.uid or (control.target and control.target != self.uid):
            return
        if control.op == "node" and control.stats is not None:
            if control.node not in self.peers and not self.shutting_down:
                # A node just started: introduce ourselves now rather than at our next
                # heartbeat, so its ``info`` lists the whole cluster at once.
                self.spawn(self.broker.publish_control(msgspec.json.encode(self._heartbeat_message())))
            self.peers[control.node] = (control.stats, time.monotonic())
        elif control.op == "survey":
            reply = Control(
                op="survey_reply",
                node=self.uid,
                target=control.node,
                request=control.request,
                channels=dict(self.hub.channels()),
            )
            self.spawn(self.broker.publish_control(msgspec.json.encode(reply)))
        elif control.op in self.control_handlers:
            self.control_handlers[control.op](control)
        elif control.op == "survey_reply":
            survey = self._surveys.get(control.request)
            if survey is not None:
                done, counts, expected = survey
                for channel, count in (control.channels or {}).items():
                    counts[channel] = counts.get(channel, 0) + count
                expected.discard(control.node)
                if not expected and not done.done():
                    done.set_result(None)
        else:
            self.spawn(apply_control(self.hub, self.revocations, control))

    # --- publishing, history, presence

    async def publish(
        self,
        channel: str,
        data: Raw,
        *,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        skip_history: bool = False,
        idempotency_key: str = "",
        delta: bool = False,
    ) -> PublishResult:
        opts = self.options(channel)
        self.counters.publications += 1
        # As a delta to delta subscribers (spec §2.2): asked per publication or by the namespace.
        as_delta = bool(opts.allowed_delta_types) and (delta or opts.delta_publish)
        pub = Publication(data=data, info=info, tags=tags or None, delta=as_delta)
        return await self.broker.publish(
            channel, pub, self.publish_options(opts, skip_history=skip_history, idempotency_key=idempotency_key)
        )

    async def history(self, channel: str, flt: HistoryFilter) -> HistoryPage:
        opts = self.options(channel)
        if not opts.history_enabled:
            raise errors.ERROR_NOT_AVAILABLE
        try:
            return _without_delta_marks(await self.broker.history(channel, flt, self.config.history_meta_ttl(opts)))
        except UnrecoverablePosition:
            raise errors.ERROR_UNRECOVERABLE_POSITION from None

    async def stream_top(self, channel: str, opts: ChannelOptions) -> StreamPosition:
        return (await self.read_stream(channel, HistoryFilter(limit=0), opts)).top

    async def read_stream(self, channel: str, flt: HistoryFilter, opts: ChannelOptions) -> HistoryPage:
        """A stream read for subscribing clients, shared by identical reads not yet under way.

        In a reconnect storm thousands of clients recover the same channel from the same
        position at once: one engine round trip serves them all. Only a read that has not been
        sent yet is joined: a subscriber is indexed (and buffering) before it asks, so the read
        happens after every one of its readers was indexed and none can miss a publication
        between the read and its buffer. The page is shared: callers must not modify it.
        Raises :class:`UnrecoverablePosition` like the engine.
        """
        key = (channel, flt)
        shared = self._reads.get(key)
        if shared is None:
            shared = self._reads[key] = asyncio.ensure_future(self._read_once(key, opts))
        # Awaited directly, not shielded: nothing cancels a command midway except shutdown,
        # and a shield per waiter showed up in storm profiles.
        return await shared

    async def _read_once(self, key: tuple[str, HistoryFilter], opts: ChannelOptions) -> HistoryPage:
        if self._read_gather:
            # A remote engine: give the rest of a storm's identical recoveries a moment to join.
            await asyncio.sleep(self._read_gather)
        del self._reads[key]  # from here on the read is under way: later readers start their own
        channel, flt = key
        return _without_delta_marks(await self.broker.history(channel, flt, self.config.history_meta_ttl(opts)))

    async def remove_history(self, channel: str) -> None:
        if not self.options(channel).history_enabled:
            raise errors.ERROR_NOT_AVAILABLE
        await self.broker.remove_history(channel)

    async def presence(self, channel: str) -> Mapping[str, ClientInfo]:
        if not self.options(channel).presence:
            raise errors.ERROR_NOT_AVAILABLE
        return await self.presence_manager.presence(channel)

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        if not self.options(channel).presence:
            raise errors.ERROR_NOT_AVAILABLE
        return await self.presence_manager.presence_stats(channel)

    # --- subscriptions of local connections

    async def add_subscription(self, sub: Subscription) -> None:
        """Index a subscription, then make sure the broker delivers its channel here.

        Every subscriber awaits the broker (not only the first on the node): its stream read
        must come after the node's subscription is in effect, or a publication could be lost.
        """
        self.hub.add_subscription(sub)
        await self.broker.subscribe(sub.channel)

    async def remove_subscription(self, sub: Subscription, info: ClientInfo) -> None:
        """Unindex a subscription, then drop presence and announce the leave where configured."""
        self.hub.remove_subscription(sub)
        await self._after_removal(sub, info)

    def release_subscription(self, sub: Subscription, info: ClientInfo) -> None:
        """:meth:`remove_subscription` for a connection that is going away: unindexed at once,
        and a task only when the engine has something to do (a disconnect storm makes
        thousands of these)."""
        last = self.hub.remove_subscription(sub)
        if last or sub.presence or sub.publishes_join_leave:
            self.spawn(self._after_removal(sub, info))

    async def withdraw_subscription(self, sub: Subscription, info: ClientInfo) -> None:
        """Undo a subscribe that failed midway, so a retry finds no trace of it: unindex, stop
        receiving the channel if nobody else here wants it, drop a presence entry it may have
        made. No leave: its join was never announced. An engine failure here is logged, not
        raised: the subscribe's own error is what the client must see (a stale presence entry
        expires by itself)."""
        self.hub.remove_subscription(sub)
        try:
            await self._release_channel(sub.channel)
            if sub.presence:
                await self.presence_manager.remove_presence(sub.channel, info.client, info.user)
        except EngineUnavailable as exc:
            self._engine_failures.note(exc)

    async def _after_removal(self, sub: Subscription, info: ClientInfo) -> None:
        await self._release_channel(sub.channel)
        if sub.presence:
            await self.presence_manager.remove_presence(sub.channel, info.client, info.user)
        if sub.publishes_join_leave:
            await self.broker.publish_leave(sub.channel, info)

    async def _release_channel(self, channel: str) -> None:
        """Stop receiving a channel that has no subscriber here. Decided when the broker is
        told, not when the last subscriber left: one may have arrived in between, found the
        channel still received and skipped subscribing, and must not be cut off."""
        if not self.hub.has_channel(channel):
            await self.broker.unsubscribe(channel)

    async def announce_join(self, sub: Subscription, info: ClientInfo) -> None:
        if sub.presence:
            await self.presence_manager.add_presence(sub.channel, info.client, info, self.config.global_presence_ttl)
        if sub.publishes_join_leave:
            await self.broker.publish_join(sub.channel, info)

    async def keep_only_connection(self, user: str, client_id: str) -> None:
        """``user_personal_single_connection``: close every other connection of the user, on
        every node, with 3504 "connection limit" (as the reference does)."""
        code = errors.DISCONNECT_CONNECTION_LIMIT
        await self.control(
            Control(op="disconnect", user=user, whitelist=[client_id], code=code.code, reason=code.reason)
        )

    def is_revoked(self, user: str, jti: str, iat: int | None, scope: str) -> bool:
        return self.revocations.is_revoked(user, jti, iat, scope)

    # --- cluster-wide operations on connections (server API)

    async def control(self, control: Control) -> None:
        """Apply here and on every other node; revocations are also stored for nodes yet to start."""
        control.node = self.uid
        store = self.revocation_store
        if store is not None and control.op == "revoke_token":
            await store.revoke(control.uid, control.expire_at, control.scope)
        elif store is not None and control.op == "invalidate_user_tokens":
            await store.invalidate_user(control.user, control.issued_before, control.expire_at, control.scope)
        await apply_control(self.hub, self.revocations, control)
        self._send_control(msgspec.json.encode(control))

    def _send_control(self, data: bytes) -> None:
        """Queue a message for the other nodes; one engine message per loop turn carries them all.

        Not awaited by the API call: PUB/SUB delivery to other nodes is at most once anyway,
        and a server-API ``batch`` of ten thousand disconnects must not wait ten thousand round
        trips. A failed publish is logged.
        """
        if not self._control_out:
            asyncio.get_running_loop().call_soon(self._flush_control)
        self._control_out.append(data)

    def _flush_control(self) -> None:
        batch, self._control_out = self._control_out, []
        self.spawn(self.broker.publish_control(batch[0] if len(batch) == 1 else b"[" + b",".join(batch) + b"]"))

    # --- shutdown

    def websocket_opened(self) -> None:
        self.open_websockets += 1

    def websocket_closed(self) -> None:
        self.open_websockets -= 1
        if not self.open_websockets and self._no_websockets is not None:
            self._no_websockets.set()

    async def websockets_closed(self) -> None:
        """Wait until every upgraded socket has closed."""
        if not self.open_websockets:
            return
        self._no_websockets = asyncio.Event()
        await self._no_websockets.wait()

    def close_all(self, disconnect: Disconnect) -> None:
        for session in self.hub.all_clients():
            session.disconnect(disconnect)

    async def drain(self, window: float) -> None:
        """Close every connection with 3001, spread over ``window`` seconds (decisions §5)."""
        self.shutting_down = True
        sessions = self.hub.all_clients()
        if not sessions:
            return
        batches = max(1, min(len(sessions), int(window / 0.05) or 1))
        per_batch = -(-len(sessions) // batches)
        pause = window / batches if window > 0 else 0.0
        for start in range(0, len(sessions), per_batch):
            if start and pause:
                await asyncio.sleep(pause)
            for session in sessions[start : start + per_batch]:
                session.disconnect(errors.DISCONNECT_SHUTDOWN)


class FailureLog:
    """Expected failures (an engine outage) as one log line per interval, with a count, rather
    than a traceback each: a node with ten thousand connections would otherwise flood its log."""

    __slots__ = ("_count", "_last", "_what")
    INTERVAL = 10.0

    def __init__(self, what: str) -> None:
        self._what = what
        self._count = 0
        self._last = 0.0

    def note(self, exc: BaseException) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= self.INTERVAL:
            log.warning("%s (%d since the last report; latest: %s)", self._what, self._count, exc)
            self._count = 0
            self._last = now


def reply_error_for_api(exc: ReplyError) -> ReplyError:
    """Client-protocol errors raised by shared node code, re-worded for the server API."""
    return {
        102: errors.API_ERROR_UNKNOWN_CHANNEL,
        103: errors.API_ERROR_PERMISSION_DENIED,
        107: errors.API_ERROR_BAD_REQUEST,
        108: errors.API_ERROR_NOT_AVAILABLE,
        112: errors.API_ERROR_UNRECOVERABLE_POSITION,
    }.get(exc.code, errors.API_ERROR_INTERNAL)


def _without_delta_marks(page: HistoryPage) -> HistoryPage:
    """Publications read back from a stream, without the node-internal delta mark."""
    if not any(pub.delta for pub in page.publications):
        return page
    pubs = [structs.replace(pub, delta=False) if pub.delta else pub for pub in page.publications]
    return HistoryPage(pubs, page.top)
