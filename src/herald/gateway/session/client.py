"""One client connection's session: lifecycle, command dispatch, grants, limits, timers.

Theory of operation
-------------------
A connection starts *connecting*: the only command it may send is ``connect`` (anything else,
or nothing within ``client_stale_close_delay``, closes it). A successful connect verifies the
token (no I/O), records the user, the grant list and the expiry, registers the session in the
hub and starts app-level pings. Commands of one frame are handled in order; a command's
outcome is a reply, an error reply (:class:`ReplyError`, the connection stays), or a
:class:`Disconnect` (close frame with the code, the connection ends).

The session never sees bytes on a socket nor an encoding: a transport (``transports/``) hands
it client frames through :meth:`Client.feed` and gets what it sends through the narrow
:class:`Connection` protocol; the session's :class:`Codec` (JSON or Protobuf, chosen by the
transport) turns frames into commands and results into messages. Everything the session sends
goes through :meth:`Client.enqueue`; the node's flusher hands the queue to the transport once
per loop tick. A connection whose unsent bytes exceed ``client_queue_max_size`` is closed with
3008 so it never slows anyone else down.

Subscribing indexes the subscription in the hub first and only then reads the stream top or
recovers history, so no publication can slip between the two: whatever arrives meanwhile is
buffered on the subscription and delivered after the reply (see ``recovery.py``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, Protocol

from msgspec import Struct

from herald import errors
from herald.errors import Disconnect, ReplyError
from herald.gateway.admission import TokenBucket
from herald.gateway.codecs.base import Codec
from herald.gateway.codecs.json import JSON
from herald.gateway.codecs.messages import (
    ClientInfo,
    Command,
    ConnectRequest,
    ProtocolViolation,
    Push,
    RefreshPush,
    SubscribePush,
    UnsubscribePush,
    close_reason,
    command_method,
    raw,
    ttl_until,
)
from herald.gateway.control import ServerSubscribe
from herald.gateway.engines.broker import EngineUnavailable
from herald.gateway.hub import Subscription
from herald.gateway.node import Node
from herald.gateway.session import commands, connecting, connlog, watch
from herald.gateway.session.subscribing import SubscribeIntent, open_subscription, release_buffer
from herald.gateway.timers import weakly

log = logging.getLogger(__name__)


class Connection(Protocol):
    """The transport under a session (one per module in ``transports/``)."""

    def write(self, data: bytes) -> None:
        """Send one encoded message (a broadcast hands every subscriber the same object)."""

    def write_batch(self, messages: list[bytes]) -> None:
        """Send several messages at once, framed as the transport frames them."""

    def write_buffer_size(self) -> int: ...

    def close(self, code: int, reason: str, *, linger: bool = True) -> None:
        """End the connection telling the client ``code``/``reason`` the transport's way (a close
        frame, or a disconnect push on streams); with ``linger``, wait for the peer to close."""


class State(Enum):
    CONNECTING = 1
    CONNECTED = 2
    CLOSED = 3


class Client:
    __slots__ = (
        "__weakref__",  # timers hold the session weakly (timers.weakly)
        "_awaiting_pong",
        "_command_budget",
        "_conn",
        "_dirty",
        "_inbox",
        "_out",
        "_ping_seq",
        "_pong_seq",
        "_refused_in_row",
        "app_pings",
        "codec",
        "connected_at",
        "expires_at",
        "grants",
        "headers",
        "id",
        "info",
        "log_detail",
        "meta",
        "node",
        "scope",
        "session",
        "state",
        "subs",
        "token_iat",
        "token_jti",
        "transport",
        "unusable",
        "user",
    )

    def __init__(
        self,
        node: Node,
        conn: Connection,
        codec: Codec = JSON,
        *,
        app_pings: bool = True,
        session: str = "",
        transport: str = "websocket",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.node = node
        self.app_pings = app_pings  # False when the transport pings with native frames
        self._conn = conn
        self.codec = codec
        self.id = str(uuid.uuid4())
        # Emulation and unidirectional connections have a session id (spec §1.7, §1.8).
        self.session = session
        # For proxy requests (proxy.md §2): the transport's name and the allow-listed headers of
        # the client's HTTP request, kept for every later proxy call of this connection.
        self.transport = transport
        self.headers = headers
        self.meta: bytes | None = None  # a connect proxy result's meta, never sent to the client
        self.user = ""
        self.info: bytes | None = None
        self.state = State.CONNECTING
        self.subs: dict[str, Subscription] = {}
        self.token_jti = ""
        self.token_iat: int | None = None
        self.grants: frozenset[str] = frozenset()
        self.scope = ""  # environment prefix of the secret that verified the token (decisions §2)
        self.expires_at: float | None = None  # unix time
        self._out: list[bytes] = []
        self._dirty = False
        self._inbox: collections.deque[bytes] | None = None  # frames waiting behind a running command
        self.unusable = False  # after an error reply to connect (spec §4.3)
        self._ping_seq = 0
        self._pong_seq = 0
        self._awaiting_pong = False
        cfg = node.config
        self._command_budget = (
            TokenBucket(cfg.client_command_rate_limit, cfg.client_command_rate_burst or None)
            if cfg.client_command_rate_limit > 0
            else None
        )
        self._refused_in_row = 0
        self.connected_at = 0.0  # monotonic time of the connect log line (session/connlog.py)
        self.log_detail = ""  # more about the next refusal or disconnect, for its log line
        node.timers.call_later(node.config.client_stale_close_delay, weakly(self, Client._check_stale))

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def client_info(self, chan_info: bytes | None = None) -> ClientInfo:
        return ClientInfo(
            user=self.user,
            client=self.id,
            conn_info=raw(self.info),
            chan_info=raw(chan_info),
        )

    # --- outbound queue (hub.Outbox)

    def enqueue(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            return
        self._out.append(data)
        if not self._dirty:
            self._dirty = True
            self.node.flusher.mark(self)

    def flush(self) -> None:
        self._dirty = False
        out = self._out
        if not out:
            return
        self._out = []
        if len(out) == 1:
            self._conn.write(out[0])
        else:
            self._conn.write_batch(out)
        if self._conn.write_buffer_size() > self.node.config.client_queue_max_size:
            self.node.counters.bump(self.node.counters.slow, self.transport)
            self.disconnect(errors.DISCONNECT_SLOW)

    def check_position(self, sub: Subscription) -> None:
        watch.check_position_now(self, sub)

    def insufficient_state(self, sub: Subscription) -> None:
        """A positioned subscription saw a gap: make the SDK resubscribe and recover (spec §6.2)."""
        if sub.server_side:
            self.disconnect(errors.DISCONNECT_INSUFFICIENT_STATE)
            return
        # Called from inside the hub's broadcast loop: unindex after the loop finishes.
        asyncio.get_running_loop().call_soon(self.drop_subscription, sub, *errors.UNSUBSCRIBE_INSUFFICIENT_STATE)

    # --- inbound

    def feed(self, frame: bytes) -> None:
        """A client frame from the transport. Frames are handled in arrival order: commands that
        wait on the engine queue the frames behind them, never reordered."""
        if self._inbox is not None:
            self._inbox.append(frame)
            return
        if frame == self.codec.pong:
            self.handle_pong()  # the bulk of inbound traffic: no task, no decoding
            return
        self._inbox = collections.deque((frame,))
        self.node.spawn(self._drain_inbox())

    async def _drain_inbox(self) -> None:
        inbox = self._inbox
        assert inbox is not None
        try:
            while inbox and not self.closed:
                await self.handle_frame(inbox.popleft())
        finally:
            self._inbox = None

    async def handle_frame(self, frame: bytes | str) -> None:
        if self.state is State.CLOSED or self.unusable:
            return
        if self.codec.unidirectional:
            self.disconnect(errors.DISCONNECT_BAD_REQUEST)  # a unidirectional client sends nothing
            return
        try:
            commands = self.codec.decode_commands(frame)  # type: ignore[arg-type]
        except ProtocolViolation as exc:
            log.info("client %s sent a bad frame: %s", self.id, exc)
            self.disconnect(errors.DISCONNECT_BAD_REQUEST)
            return
        for cmd in commands:
            if self.closed or self.unusable:
                return
            await self._handle_command(cmd)

    async def _handle_command(self, cmd: Command) -> None:
        method = command_method(cmd)
        if cmd.id == 0:
            if method == "send" and self.state is State.CONNECTED:
                # Herald has no asynchronous message handler, like Centrifugo OSS (spec §2.11).
                self.disconnect(errors.DISCONNECT_NOT_AVAILABLE)
            else:
                self.handle_pong()  # before connect this is a bad request, `send` too (spec §1.4)
            return
        if method is None:
            self.disconnect(errors.DISCONNECT_BAD_REQUEST)
            return
        if self._command_budget is not None and not self._within_budget(cmd.id):
            return
        if (method == "connect") != (self.state is State.CONNECTING):
            self.disconnect(errors.DISCONNECT_BAD_REQUEST)
            return
        handler = _HANDLERS.get(method)
        if handler is None:
            self.disconnect(errors.DISCONNECT_BAD_REQUEST)
            return
        try:
            await handler(self, cmd.id, getattr(cmd, method))
        except ReplyError as exc:
            errors.spent(exc)
            self.enqueue(self.codec.encode_error_reply(cmd.id, exc))
        except Disconnect as exc:
            errors.spent(exc)
            self.disconnect(exc)
        except EngineUnavailable as exc:
            # Expected during a broker outage: one line, no traceback; the SDK retries (code 100
            # is temporary) and nothing of the failed command stays behind.
            log.warning("client %s: %s failed: %s", self.id, method, exc)
            if method == "connect":
                self.disconnect(errors.DISCONNECT_SERVER_ERROR)
            else:
                self.enqueue(self.codec.encode_error_reply(cmd.id, errors.ERROR_INTERNAL))
        except Exception:
            log.exception("client %s: %s failed", self.id, method)
            if method == "connect":
                self.disconnect(errors.DISCONNECT_SERVER_ERROR)
            else:
                self.enqueue(self.codec.encode_error_reply(cmd.id, errors.ERROR_INTERNAL))

    def _within_budget(self, cmd_id: int) -> bool:
        """Per-connection command rate limit: error 111 over it, 3013 when the abuse goes on."""
        assert self._command_budget is not None
        if self._command_budget.take():
            self._refused_in_row = 0
            return True
        self._refused_in_row += 1
        # A client that keeps sending after a burst's worth of 111s is not backing off.
        cfg = self.node.config
        if self._refused_in_row >= (cfg.client_command_rate_burst or max(1, int(cfg.client_command_rate_limit))):
            self.disconnect(errors.DISCONNECT_TOO_MANY_REQUESTS)
        else:
            self.enqueue(self.codec.encode_error_reply(cmd_id, errors.ERROR_TOO_MANY_REQUESTS))
        return False

    def reply(self, cmd_id: int, method: str, result: Struct) -> None:
        self.enqueue(self.codec.encode_reply(cmd_id, method, result))

    async def connect_unidirectional(self, req: ConnectRequest) -> None:
        """A unidirectional connection's ConnectRequest: connect errors become disconnects (spec §1.7)."""
        try:
            await connlog.connect(self, 0, req)
        except ReplyError as exc:
            errors.spent(exc)
            self.disconnect(connecting.unidirectional_disconnect(exc))
        except Disconnect as exc:
            errors.spent(exc)
            self.disconnect(exc)
        except Exception as exc:
            if not isinstance(exc, EngineUnavailable):
                log.exception("client %s: unidirectional connect failed", self.id)
            self.disconnect(errors.DISCONNECT_SERVER_ERROR)

    # --- connection state (driven by session/connecting.py)

    def mark_connected(self) -> None:
        self.state = State.CONNECTED
        self.node.hub.add_client(self)

    def undo_connected(self) -> None:
        """A connect that failed after registering: as if it never happened, and unusable."""
        if self.state is State.CONNECTED:
            self._unregister()
            self.state = State.CONNECTING
            self.unusable = True

    def drop_subscription(self, sub: Subscription, code: int, reason: str) -> None:
        """Server-initiated unsubscribe of one subscription, with an unsubscribe push."""
        if self.subs.get(sub.channel) is not sub:
            return
        del self.subs[sub.channel]
        self.enqueue(self.codec.encode_push(Push(channel=sub.channel, unsubscribe=UnsubscribePush(code, reason))))
        self.node.release_subscription(sub, self.client_info(sub.chan_info))

    # --- server API driven operations (node.Session)

    def server_unsubscribe(self, channel: str, code: int, reason: str) -> None:
        sub = self.subs.get(channel)
        if sub is not None:
            self.drop_subscription(sub, code, reason)

    async def server_subscribe(self, request: ServerSubscribe) -> None:
        """Server API ``subscribe``: add a server-side subscription live (subscribe push)."""
        if self.state is not State.CONNECTED or request.channel in self.subs:
            return
        since = request.recover_since
        intent = SubscribeIntent(
            channel=request.channel,
            server_side=True,
            recover=since is not None,
            offset=since.offset if since else 0,
            epoch=since.epoch if since else "",
            chan_info=bytes(request.info) or None,
            data=bytes(request.data) or None,
            expires_at=request.expire_at or None,
            granted_by="server",
        )
        sub, result = await open_subscription(self, intent)
        push = SubscribePush(
            recoverable=result.recoverable,
            epoch=result.epoch,
            offset=result.offset,
            positioned=result.positioned,
            data=result.data,
        )
        self.enqueue(self.codec.encode_push(Push(channel=request.channel, subscribe=push)))
        if result.publications:
            for pub in result.publications:
                self.enqueue(self.codec.encode_push(Push(channel=request.channel, pub=pub)))
        release_buffer(self, sub)

    def server_refresh(self, expired: bool, expire_at: int, info: bytes | None) -> None:
        if expired:
            self.disconnect(errors.DISCONNECT_EXPIRED)
            return
        if info is not None:
            self.info = info
        if expire_at:
            self.expires_at = float(expire_at)
            self.schedule_expiry_check()
            ttl = ttl_until(expire_at, time.time())
            self.enqueue(self.codec.encode_push(Push(refresh=RefreshPush(expires=True, ttl=ttl))))

    # --- pings, expiry, staleness

    def start_pings(self) -> None:
        interval = self.node.config.ping_interval
        if interval > 0 and self.app_pings:
            self.node.timers.call_later(random.uniform(interval / 2, interval), weakly(self, Client._ping))

    def _ping(self) -> None:
        if self.state is State.CLOSED:
            return
        cfg = self.node.config
        self.enqueue(self.codec.ping)
        if cfg.pong_timeout > 0 and not self.codec.unidirectional:
            self._ping_seq += 1
            self._awaiting_pong = True
            self.node.timers.call_later(cfg.pong_timeout, weakly(self, Client._check_pong, self._ping_seq))
        self.node.timers.call_later(cfg.ping_interval, weakly(self, Client._ping))

    def _check_pong(self, seq: int) -> None:
        if self.state is not State.CLOSED and self._pong_seq < seq:
            self.disconnect(errors.DISCONNECT_NO_PONG)

    def handle_pong(self) -> None:
        if self.state is not State.CONNECTED or not self._awaiting_pong:
            self.disconnect(errors.DISCONNECT_BAD_REQUEST)  # an unnecessary pong (spec §1.5)
            return
        self._awaiting_pong = False
        self._pong_seq = self._ping_seq

    def schedule_expiry_check(self) -> None:
        if self.expires_at is None:
            return
        deadline = self.expires_at + self.node.config.client_expired_close_delay
        self.node.timers.call_later(deadline - time.time(), weakly(self, Client._check_expired))

    def _check_expired(self) -> None:
        if self.state is State.CLOSED or self.expires_at is None:
            return
        if time.time() >= self.expires_at + self.node.config.client_expired_close_delay:
            self.disconnect(errors.DISCONNECT_EXPIRED)
        else:
            self.schedule_expiry_check()

    def _check_stale(self) -> None:
        if self.state is State.CONNECTING or (self.unusable and self.state is not State.CLOSED):
            self.disconnect(errors.DISCONNECT_STALE)

    # --- closing

    def disconnect(self, disconnect: Disconnect) -> None:
        """Close with a code; queued messages are written first (reasons are plain text)."""
        if self.state is State.CLOSED:
            return
        if self._out:
            self.flush()
            if self.closed:  # the flush found the connection too slow and closed it
                return
        self._teardown(disconnect)
        self.node.counters.bump(self.node.counters.disconnects, disconnect.code)
        if disconnect.code != errors.DISCONNECT_CONNECTION_CLOSED.code:
            # A reconnect code needs no close handshake: should the frame be lost, the SDK sees a
            # dropped connection and does the same (reconnects). Terminal codes must arrive.
            self._conn.close(disconnect.code, close_reason(disconnect), linger=not disconnect.reconnect)

    def transport_closed(self) -> None:
        """The socket ended (peer went away, or after our close)."""
        if self.state is not State.CLOSED:
            self._teardown(errors.DISCONNECT_CONNECTION_CLOSED)

    def _teardown(self, disconnect: Disconnect) -> None:
        was_connected = self.state is State.CONNECTED
        self.state = State.CLOSED
        self._out = []
        if was_connected:
            self._unregister()
        if self.connected_at:
            connlog.disconnected(self, disconnect)

    def _unregister(self) -> None:
        """Leave the hub and release every subscription (presence, leave, engine PUB/SUB)."""
        node = self.node
        node.hub.remove_client(self)
        subs, self.subs = self.subs, {}
        for sub in subs.values():
            node.release_subscription(sub, self.client_info(sub.chan_info))


_Handler = Callable[[Client, int, Any], Awaitable[None]]
_HANDLERS: dict[str, _Handler] = {
    "connect": connlog.connect,  # connecting.connect, with its log line
    "refresh": connecting.refresh,
    "subscribe": commands.subscribe,
    "unsubscribe": commands.unsubscribe,
    "sub_refresh": commands.sub_refresh,
    "publish": commands.publish,
    "presence": commands.presence,
    "presence_stats": commands.presence_stats,
    "history": commands.history,
    "rpc": commands.rpc,
}
