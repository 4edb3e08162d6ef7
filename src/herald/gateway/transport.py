"""HTTP and WebSocket adapter on aiohttp: the only module that imports the web server library.

One port serves the WebSocket endpoint, the server API, and ``/health``.

Outbound WebSocket frames are written straight to the connection's transport, pre-framed:
a server frame is unmasked, so framing is a 2-10 byte header, and writing never awaits. The
reading side stays with aiohttp (frame parsing, size limit 1009, native ping/pong, close
handshake).
"""

from __future__ import annotations

import asyncio
import fnmatch
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from aiohttp import WSMsgType, web

from herald import errors
from herald.errors import ReplyError
from herald.gateway.admission import TokenBucket
from herald.gateway.api import LEGACY_METHOD_NUMBERS, BadRequest, ServerAPI
from herald.gateway.client import Client
from herald.gateway.metrics import Metrics
from herald.gateway.node import Node
from herald.protocol import EMPTY_RAW

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT: Final = 5.0  # wait this long for the peer's close frame, then drop TCP (spec §1.6)
_TRANSPORT_ERROR_STATUS: Final = {100: 500, 102: 404, 104: 404, 107: 400, 108: 400, 112: 416, 113: 409}
_encode = msgspec.json.encode


def frame_text(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame header for ``payload`` (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n))
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


class WebSocketConnection:
    """``client.Connection`` over an aiohttp WebSocket."""

    __slots__ = ("_close_task", "_closing", "_transport", "_ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport) -> None:
        self._ws = ws
        self._transport = transport
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> None:
        transport = self._transport
        if self._closing or transport.is_closing():
            return
        if len(data) < 4096:
            transport.write(frame_text(data) + data)
        else:
            transport.writelines((frame_text(data), data))

    def write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        loop = asyncio.get_running_loop()
        self._close_task = loop.create_task(self._close(code, reason))
        # A peer that does not read never completes the close handshake: drop it.
        loop.call_later(_CLOSE_TIMEOUT + 1.0, self._abort)

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self._ws.close(code=code, message=reason.encode()), _CLOSE_TIMEOUT)
        except (TimeoutError, ConnectionError, RuntimeError):
            self._abort()

    def _abort(self) -> None:
        if not self._transport.is_closing() or self._transport.get_write_buffer_size():
            self._transport.abort()


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """Centrifugo's rule (spec §1.2): no list = only requests without Origin; globs otherwise."""
    if origin is None:
        return True
    if not allowed:
        return False
    origin = origin.lower()
    return any(pattern == "*" or fnmatch.fnmatchcase(origin, pattern.lower()) for pattern in allowed)


class HttpServer:
    def __init__(self, node: Node, api: ServerAPI) -> None:
        self.node = node
        self.api = api
        cfg = node.config
        self.accepting = True
        self._admission = (
            TokenBucket(cfg.client_connection_rate_limit, cfg.client_connection_rate_burst or None)
            if cfg.client_connection_rate_limit > 0
            else None
        )
        self.app = web.Application(client_max_size=max(cfg.websocket_message_size_limit, 10 * 1024 * 1024))
        api_prefix = cfg.api_handler_prefix.rstrip("/")
        self.app.router.add_route("GET", cfg.websocket_handler_prefix.rstrip("/") or "/", self.websocket)
        self.app.router.add_route("*", api_prefix or "/", self._with_api_auth(self.legacy_api))
        self.app.router.add_route("*", f"{api_prefix}/{{method}}", self._with_api_auth(self.api_method))
        self.app.router.add_route("GET", "/health", self.health)
        if cfg.prometheus:
            self._metrics = Metrics(node)
            self.app.router.add_route("GET", "/metrics", self.metrics)

    # --- health

    async def health(self, request: web.Request) -> web.Response:
        if not self.accepting or self.node.shutting_down:
            return web.json_response({"status": "shutting down"}, status=503)
        return web.json_response({})

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    # --- WebSocket

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        cfg = self.node.config
        counters = self.node.counters
        if not origin_allowed(request.headers.get("Origin"), cfg.allowed_origins):
            counters.bump(counters.refused, "origin")
            return web.json_response({"error": "origin not allowed"}, status=403)
        if not self.accepting or self.node.shutting_down:
            counters.bump(counters.refused, "shutdown")
            return web.json_response({"error": "shutting down"}, status=503)
        if self._admission is not None and not self._admission.take():
            # Refuse cheaply during a reconnect storm; the SDKs back off with jitter (decisions §5).
            counters.bump(counters.refused, "rate")
            return web.json_response({"error": "too many connections, retry later"}, status=503)
        query = request.query
        if "protobuf" in (query.get("format"), query.get("cf_protocol")):
            counters.bump(counters.refused, "protocol")
            return web.json_response({"error": "only the JSON protocol is supported"}, status=400)
        counters.connections += 1
        native_pings = query.get("cf_ws_frame_ping_pong") == "true"
        ws = web.WebSocketResponse(
            max_msg_size=cfg.websocket_message_size_limit,
            compress=False,
            autoping=True,
            timeout=_CLOSE_TIMEOUT,
            protocols=("centrifuge-json",),
            heartbeat=cfg.ping_interval if native_pings else None,
            decode_text=False,
        )
        await ws.prepare(request)
        transport = request.transport
        if transport is None:
            return ws
        client = Client(self.node, WebSocketConnection(ws, transport), app_pings=not native_pings)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                    await client.handle_frame(msg.data)
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            client.transport_closed()
        return ws

    # --- server API

    def _with_api_auth(
        self, handler: Callable[[web.Request, str], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            if request.method != "POST":
                return web.Response(status=405, text="Method Not Allowed")
            scope = self._api_key_scope(request)
            if scope is None:
                return web.Response(status=401)
            return await handler(request, scope)

        return wrapped

    def _api_key_scope(self, request: web.Request) -> str | None:
        """The environment prefix the request's API key is bound to ("" = unbound), None if refused."""
        cfg = self.node.config
        if cfg.api_insecure:
            return ""
        key = request.headers.get("X-API-Key")
        if key is None:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "apikey":
                key = value.strip()
        if key is None:
            key = request.query.get("api_key")
        if not key:
            return None
        given = key.encode()
        if cfg.api_key and hmac.compare_digest(given, cfg.api_key.encode()):
            return ""
        for scoped in cfg.api_keys:
            if hmac.compare_digest(given, scoped.key.encode()):
                return scoped.channel_prefix
        return None

    async def api_method(self, request: web.Request, scope: str) -> web.StreamResponse:
        method = request.match_info["method"]
        if not self.api.knows(method):
            return web.Response(status=404, text="Not Found")
        self.node.counters.bump(self.node.counters.api_requests, method)
        body = await request.read()
        try:
            result = await self.api.call(method, body, scope)
        except BadRequest:
            return web.Response(status=400, text="Bad Request")
        except ReplyError as exc:
            return self._api_error(request, exc, method)
        except Exception:
            log.exception("server API %s failed", method)
            return self._api_error(request, errors.API_ERROR_INTERNAL, method)
        if method == "batch":  # the one method whose reply is not wrapped in "result" (spec §8.2)
            return web.Response(body=_encode(result), content_type="application/json")
        return web.Response(body=b'{"result":' + _encode(result) + b"}", content_type="application/json")

    def _api_error(self, request: web.Request, exc: ReplyError, method: str) -> web.Response:
        body = {"code": exc.code, "message": exc.message}
        transport_mode = (
            self.node.config.api_error_mode == "transport"
            or request.headers.get("X-Centrifugo-Error-Mode", "").lower() == "transport"
        )
        if transport_mode and method != "batch":
            return web.Response(
                body=_encode(body), status=_TRANSPORT_ERROR_STATUS.get(exc.code, 500), content_type="application/json"
            )
        return web.Response(body=_encode({"error": body}), content_type="application/json")

    async def legacy_api(self, request: web.Request, scope: str) -> web.StreamResponse:
        """``POST /api``: newline-separated ``{"id","method","params"}`` commands (spec §8.1)."""
        if self.node.shutting_down:
            return web.Response(status=503, text="Service Unavailable")
        body = await request.read()
        replies: list[bytes] = []
        try:
            commands = [_legacy_decoder.decode(line) for line in body.split(b"\n") if line.strip()]
        except (msgspec.DecodeError, msgspec.ValidationError):
            return web.Response(status=400, text="Bad Request")
        if not commands:
            return web.Response(status=400, text="Bad Request")
        for cmd in commands:
            method = LEGACY_METHOD_NUMBERS.get(cmd.method) if isinstance(cmd.method, int) else cmd.method.lower()
            if method is None or not (self.api.knows(method) or method in _PRO_METHODS):
                return web.Response(status=400, text="Bad Request")
        for cmd in commands:
            method = LEGACY_METHOD_NUMBERS.get(cmd.method) if isinstance(cmd.method, int) else cmd.method.lower()
            assert method is not None
            reply: dict[str, object] = {"id": cmd.id} if cmd.id else {}
            try:
                if not self.api.knows(method):
                    raise errors.API_ERROR_NOT_FOUND
                reply["result"] = await self.api.call(method, bytes(cmd.params) or b"{}", scope)
            except BadRequest:
                reply["error"] = {"code": 107, "message": "bad request"}
            except ReplyError as exc:
                reply["error"] = {"code": exc.code, "message": exc.message}
            except Exception:
                log.exception("server API %s failed", method)
                reply["error"] = {"code": 100, "message": "internal server error"}
            replies.append(_encode(reply))
        return web.Response(body=b"\n".join(replies), content_type="application/json")


class _LegacyCommand(msgspec.Struct):
    method: str | int
    id: int = 0
    params: msgspec.Raw = EMPTY_RAW


_legacy_decoder: Final = msgspec.json.Decoder(_LegacyCommand)

# Centrifugo PRO methods known to the legacy endpoint's schema: error 104, not HTTP 400.
_PRO_METHODS: Final = frozenset(
    {"connections", "update_user_status", "get_user_status", "delete_user_status", "block_user", "unblock_user"}
)
