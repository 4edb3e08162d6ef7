"""One client connection's session: lifecycle, command dispatch, grants, limits, timers.

Theory of operation
-------------------
A connection starts *connecting*: the only command it may send is ``connect`` (anything else,
or nothing within ``client_stale_close_delay``, closes it). A successful connect verifies the
token (no I/O), records the user, the grant list and the expiry, registers the session in the
hub and starts app-level pings. Commands of one frame are handled in order; a command's
outcome is a reply, an error reply (:class:`ReplyError`, the connection stays), or a
:class:`Disconnect` (close frame with the code, the connection ends).

Everything the session sends goes through :meth:`Client.enqueue`; the node's flusher writes
the queue as one WebSocket frame per loop tick. A connection whose unsent bytes exceed
``client_queue_max_size`` is closed with 3008 so it never slows anyone else down.

Subscribing indexes the subscription in the hub first and only then reads the stream top or
recovers history, so no publication can slip between the two: whatever arrives meanwhile is
buffered on the subscription and delivered after the reply (see ``recovery.py``).
"""

from __future__ import annotations

import asyncio
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
from herald.gateway.codecs.json import (
    PING,
    decode_commands,
    encode_error_reply,
    encode_push,
    encode_reply,
    encode_unsubscribe_push,
)
from herald.gateway.codecs.messages import (
    ClientInfo,
    Command,
    ConnectRequest,
    ConnectResult,
    ProtocolViolation,
    Push,
    RefreshPush,
    RefreshRequest,
    RefreshResult,
    SubscribePush,
    close_reason,
    command_method,
    raw,
    ttl_until,
)
from herald.gateway.engines.broker import EngineUnavailable
from herald.gateway.hub import Subscription
from herald.gateway.node import Node, ServerSubscribe
from herald.gateway.session import commands, watch
from herald.gateway.session.subscribing import SubscribeIntent, open_subscription, release_buffer
from herald.gateway.timers import weakly
from herald.tokens import ConnectionClaims, InvalidToken, TokenExpired

log = logging.getLogger(__name__)

# Server frames are capped so no SDK's default inbound limit is ever hit by batching.
_MAX_FRAME = 65_536


class Connection(Protocol):
    """The transport under a session (implemented in ``transports/websocket.py``)."""

    def write(self, data: bytes) -> None: ...

    def write_buffer_size(self) -> int: ...

    def close(self, code: int, reason: str, *, linger: bool = True) -> None:
        """Send a close frame; with ``linger``, wait for the peer's before dropping TCP."""


class State(Enum):
    CONNECTING = 1
    CONNECTED = 2
    CLOSED = 3


class Client:
    __slots__ = (
        "__weakref__",  # timers hold the session weakly (timers.weakly)
        "_app_pings",
        "_awaiting_pong",
        "_command_budget",
        "_conn",
        "_dirty",
        "_expires_at",
        "_out",
        "_ping_seq",
        "_pong_seq",
        "_refused_in_row",
        "_unusable",
        "grants",
        "id",
        "info",
        "node",
        "scope",
        "state",
        "subs",
        "token_iat",
        "token_jti",
        "user",
    )

    def __init__(self, node: Node, conn: Connection, *, app_pings: bool = True) -> None:
        self.node = node
        self._app_pings = app_pings  # False when the transport pings with native frames
        self._conn = conn
        self.id = str(uuid.uuid4())
        self.user = ""
        self.info: bytes | None = None
        self.state = State.CONNECTING
        self.subs: dict[str, Subscription] = {}
        self.token_jti = ""
        self.token_iat: int | None = None
        self.grants: frozenset[str] = frozenset()
        self.scope = ""  # environment prefix of the secret that verified the token (decisions §2)
        self._expires_at: float | None = None  # unix time
        self._out: list[bytes] = []
        self._dirty = False
        self._unusable = False  # after an error reply to connect (spec §4.3)
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
            self._write_batched(out)
        if self._conn.write_buffer_size() > self.node.config.client_queue_max_size:
            self.disconnect(errors.DISCONNECT_SLOW)

    def _write_batched(self, out: list[bytes]) -> None:
        frame: list[bytes] = []
        size = 0
        for message in out:
            if frame and size + len(message) > _MAX_FRAME:
                self._conn.write(b"\n".join(frame))
                frame, size = [], 0
            frame.append(message)
            size += len(message) + 1
        self._conn.write(b"\n".join(frame))

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

    async def handle_frame(self, frame: bytes | str) -> None:
        if self.state is State.CLOSED or self._unusable:
            return
        try:
            commands = decode_commands(frame)
        except ProtocolViolation as exc:
            log.info("client %s sent a bad frame: %s", self.id, exc)
            self.disconnect(errors.DISCONNECT_BAD_REQUEST)
            return
        for cmd in commands:
            if self.closed or self._unusable:
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
            self.enqueue(encode_error_reply(cmd.id, exc))
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
                self.enqueue(encode_error_reply(cmd.id, errors.ERROR_INTERNAL))
        except Exception:
            log.exception("client %s: %s failed", self.id, method)
            if method == "connect":
                self.disconnect(errors.DISCONNECT_SERVER_ERROR)
            else:
                self.enqueue(encode_error_reply(cmd.id, errors.ERROR_INTERNAL))

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
            self.enqueue(encode_error_reply(cmd_id, errors.ERROR_TOO_MANY_REQUESTS))
        return False

    def reply(self, cmd_id: int, method: str, result: Struct) -> None:
        self.enqueue(encode_reply(cmd_id, method, result))

    # --- connect

    async def _connect(self, cmd_id: int, req: ConnectRequest) -> None:
        node, cfg = self.node, self.node.config
        if node.shutting_down:
            raise errors.DISCONNECT_SHUTDOWN
        now = time.time()
        claims: ConnectionClaims | None = None
        if req.token:
            try:
                claims = self._verify_connection_token(req.token, now)
            except ReplyError:
                self._unusable = True  # the SDK closes and reconnects with a new token
                raise
            user = claims.user
            if not user and cfg.disallow_anonymous_connection_tokens:
                raise errors.DISCONNECT_PERMISSION_DENIED
        elif cfg.allow_anonymous_connect_without_token or cfg.client_insecure:
            user = ""
        else:
            log.info("client %s: connect without credentials", self.id)
            raise errors.DISCONNECT_BAD_REQUEST
        user_limit = cfg.client_user_connection_limit
        if user_limit and user and node.hub.user_connection_count(user) >= user_limit:
            raise errors.DISCONNECT_CONNECTION_LIMIT
        if cfg.client_connection_limit and node.hub.num_clients >= cfg.client_connection_limit:
            raise errors.DISCONNECT_CONNECTION_LIMIT
        server_channels: dict[str, Any] = {}
        if claims is not None:
            if claims.expires_at is not None and claims.expires_at <= now:
                self._unusable = True
                raise errors.ERROR_EXPIRED
            self._expires_at = claims.expires_at
            self.info = claims.info
            self.token_jti, self.token_iat = claims.jti, claims.iat
            self.scope = claims.scope
            if cfg.token_channels == "grant":
                self.grants = frozenset(claims.channels)
            else:
                server_channels = dict(claims.subs) if claims.subs else dict.fromkeys(claims.channels)
        if cfg.client_channel_limit and len(server_channels) > cfg.client_channel_limit:
            raise errors.DISCONNECT_CHANNEL_LIMIT
        for channel in server_channels:
            try:
                node.options(channel)  # a bad name (107) or an unknown namespace (102)
            except ReplyError:
                self._unusable = True
                raise
        self.user = user
        self.state = State.CONNECTED
        node.hub.add_client(self)

        result = ConnectResult(client=self.id, version=node.version)
        if self._expires_at is not None:
            result.expires = True
            result.ttl = ttl_until(self._expires_at, now)
            self._schedule_expiry_check()
        if cfg.ping_interval > 0 and self._app_pings:
            result.ping = max(1, round(cfg.ping_interval))
            result.pong = cfg.pong_timeout > 0
        if cfg.client_connect_include_server_time:
            result.time = int(now * 1000)
        opened: list[Subscription] = []
        if server_channels:
            try:
                opened = await self._open_server_subscriptions(server_channels, req, result)
            except BaseException:
                # The connect failed as a whole: take back the registration and what was opened,
                # so the SDK's next connect finds nothing of this one.
                if self.state is State.CONNECTED:
                    self._unregister()
                    self.state = State.CONNECTING
                    self._unusable = True
                raise
        self.reply(cmd_id, "connect", result)
        for sub in opened:
            release_buffer(self, sub)
        self._schedule_first_ping()

    async def _open_server_subscriptions(
        self, server_channels: dict[str, Any], req: ConnectRequest, result: ConnectResult
    ) -> list[Subscription]:
        """Server-side subscriptions from the token (``token_channels: subscribe``), recovering
        what ``connect.subs`` asks for (spec §2.1)."""
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
                granted_by="server",
            )
            sub, sub_result = await open_subscription(self, intent)
            opened.append(sub)
            result.subs[channel] = sub_result
        return opened

    def _verify_connection_token(
        self, token: str, now: float, expired: Exception = errors.ERROR_TOKEN_EXPIRED, user: str | None = None
    ) -> ConnectionClaims:
        """Claims of a connection token (for ``user`` when given); ``expired`` when its ``exp`` has passed."""
        node = self.node
        if not node.verifier.configured:
            raise errors.DISCONNECT_INVALID_TOKEN
        try:
            claims = node.verifier.verify_connection(token, now)
        except TokenExpired:
            raise expired from None
        except InvalidToken as exc:
            log.info("client %s: invalid connection token: %s", self.id, exc)
            raise errors.DISCONNECT_INVALID_TOKEN from None
        if user is not None and claims.user != user:
            raise errors.DISCONNECT_INVALID_TOKEN
        if node.is_revoked(claims.user, claims.jti, claims.iat, claims.scope):
            raise errors.ERROR_TOKEN_EXPIRED  # decisions §3: like an expired token
        return claims

    # --- refresh

    async def _refresh(self, cmd_id: int, req: RefreshRequest) -> None:
        if not req.token:
            raise errors.DISCONNECT_BAD_REQUEST
        now = time.time()
        # A refresh token already past its exp ends the connection (3005), the SDK reconnects.
        claims = self._verify_connection_token(req.token, now, expired=errors.DISCONNECT_EXPIRED, user=self.user)
        if claims.scope != self.scope:
            raise errors.DISCONNECT_INVALID_TOKEN  # a connection never moves to another environment
        if claims.expires_at is not None and claims.expires_at <= now:
            raise errors.ERROR_EXPIRED
        if self.node.config.token_channels == "subscribe":
            wanted = set(claims.subs) if claims.subs else set(claims.channels)
            current = {ch for ch, sub in self.subs.items() if sub.granted_by == "server"}
            if wanted != current:
                raise errors.DISCONNECT_INSUFFICIENT_STATE
        else:
            self.grants = frozenset(claims.channels)
            # Access granted only by the old token ends with it: unsubscribe (code 2000, terminal).
            for channel, sub in list(self.subs.items()):
                if sub.granted_by == "grant" and channel not in self.grants:
                    self.drop_subscription(sub, *errors.UNSUBSCRIBE_SERVER)
        self.info = claims.info
        self.token_jti, self.token_iat = claims.jti, claims.iat
        self._expires_at = claims.expires_at
        result = RefreshResult()
        if claims.expires_at is not None:
            result.expires = True
            result.ttl = ttl_until(claims.expires_at, now)
            self._schedule_expiry_check()
        self.reply(cmd_id, "refresh", result)

    def drop_subscription(self, sub: Subscription, code: int, reason: str) -> None:
        """Server-initiated unsubscribe of one subscription, with an unsubscribe push."""
        if self.subs.get(sub.channel) is not sub:
            return
        del self.subs[sub.channel]
        self.enqueue(encode_unsubscribe_push(sub.channel, code, reason))
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
        self.enqueue(encode_push(Push(channel=request.channel, subscribe=push)))
        if result.publications:
            for pub in result.publications:
                self.enqueue(encode_push(Push(channel=request.channel, pub=pub)))
        release_buffer(self, sub)

    def server_refresh(self, expired: bool, expire_at: int, info: bytes | None) -> None:
        if expired:
            self.disconnect(errors.DISCONNECT_EXPIRED)
            return
        if info is not None:
            self.info = info
        if expire_at:
            self._expires_at = float(expire_at)
            self._schedule_expiry_check()
            ttl = ttl_until(expire_at, time.time())
            self.enqueue(encode_push(Push(refresh=RefreshPush(expires=True, ttl=ttl))))

    # --- pings, expiry, staleness

    def _schedule_first_ping(self) -> None:
        interval = self.node.config.ping_interval
        if interval > 0 and self._app_pings:
            self.node.timers.call_later(random.uniform(interval / 2, interval), weakly(self, Client._ping))

    def _ping(self) -> None:
        if self.state is State.CLOSED:
            return
        cfg = self.node.config
        self.enqueue(PING)
        if cfg.pong_timeout > 0:
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

    def _schedule_expiry_check(self) -> None:
        if self._expires_at is None:
            return
        deadline = self._expires_at + self.node.config.client_expired_close_delay
        self.node.timers.call_later(deadline - time.time(), weakly(self, Client._check_expired))

    def _check_expired(self) -> None:
        if self.state is State.CLOSED or self._expires_at is None:
            return
        if time.time() >= self._expires_at + self.node.config.client_expired_close_delay:
            self.disconnect(errors.DISCONNECT_EXPIRED)
        else:
            self._schedule_expiry_check()

    def _check_stale(self) -> None:
        if self.state is State.CONNECTING or (self._unusable and self.state is not State.CLOSED):
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
        self._teardown()
        self.node.counters.bump(self.node.counters.disconnects, disconnect.code)
        if disconnect.code != errors.DISCONNECT_CONNECTION_CLOSED.code:
            # A reconnect code needs no close handshake: should the frame be lost, the SDK sees a
            # dropped connection and does the same (reconnects). Terminal codes must arrive.
            self._conn.close(disconnect.code, close_reason(disconnect), linger=not disconnect.reconnect)

    def transport_closed(self) -> None:
        """The socket ended (peer went away, or after our close)."""
        if self.state is not State.CLOSED:
            self._teardown()

    def _teardown(self) -> None:
        was_connected = self.state is State.CONNECTED
        self.state = State.CLOSED
        self._out = []
        if was_connected:
            self._unregister()

    def _unregister(self) -> None:
        """Leave the hub and release every subscription (presence, leave, engine PUB/SUB)."""
        node = self.node
        node.hub.remove_client(self)
        subs, self.subs = self.subs, {}
        for sub in subs.values():
            node.release_subscription(sub, self.client_info(sub.chan_info))


_Handler = Callable[[Client, int, Any], Awaitable[None]]
_HANDLERS: dict[str, _Handler] = {
    "connect": Client._connect,
    "refresh": Client._refresh,
    "subscribe": commands.subscribe,
    "unsubscribe": commands.unsubscribe,
    "sub_refresh": commands.sub_refresh,
    "publish": commands.publish,
    "presence": commands.presence,
    "presence_stats": commands.presence_stats,
    "history": commands.history,
    "rpc": commands.rpc,
}
