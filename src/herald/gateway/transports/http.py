"""The gateway's one port: HTTP (server API, health, metrics, emulation commands) on aiohttp,
long-lived client connections on a lean path.

The only module that imports the web framework, with ``emulation.py`` (its request handler).
Every accepted TCP connection starts with a :class:`PortProtocol` that reads the request head:
a request to a client transport's path (WebSocket, HTTP streaming, SSE and their
unidirectional variants, each in its own module) goes to that transport's protocol (small
per-connection state, no request objects kept alive for hours); anything else is handed, bytes
and all, to aiohttp's request handler. Adding a transport = a module and a line in
:meth:`HttpServer._client_transports`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import hmac
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Final, cast
from urllib.parse import parse_qs

import msgspec
from aiohttp import web

from herald import errors
from herald.errors import ReplyError
from herald.gateway.admission import TokenBucket
from herald.gateway.api import LEGACY_METHOD_NUMBERS, BadRequest, ServerAPI
from herald.gateway.codecs.json import is_utf8
from herald.gateway.codecs.messages import EMPTY_RAW
from herald.gateway.metrics import Metrics
from herald.gateway.node import Node
from herald.gateway.session import connlog
from herald.gateway.transports.emulation import EmulationSessions
from herald.gateway.transports.http_stream import HttpStream
from herald.gateway.transports.sse import Sse
from herald.gateway.transports.streaming import Request, StreamConnection, StreamVariant, http_response, parse_head
from herald.gateway.transports.uni_http_stream import UniHttpStream
from herald.gateway.transports.uni_sse import UniSse
from herald.gateway.transports.uni_websocket import UniWebSocketConnection
from herald.gateway.transports.websocket import WebSocketConnection

log = logging.getLogger(__name__)

_TRANSPORT_ERROR_STATUS: Final = {100: 500, 102: 404, 104: 404, 107: 400, 108: 400, 112: 416, 113: 409}
_MAX_HEAD: Final = 16 * 1024  # an HTTP request head larger than this is refused
_encode = msgspec.json.encode


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
        self._ws_path = cfg.websocket_handler_prefix.rstrip("/").encode()
        self._uni_ws_path = cfg.uni_websocket_handler_prefix.rstrip("/").encode() if cfg.uni_websocket else None
        self.emulation = (
            EmulationSessions(node, lambda origin: origin_allowed(origin, cfg.allowed_origins))
            if cfg.http_stream or cfg.sse
            else None
        )
        self._streams = self._client_transports()
        if self.emulation is not None:
            self.app.router.add_route("*", cfg.emulation_handler_prefix.rstrip("/") or "/", self.emulation.handle)
        # Set by the app once aiohttp's runner exists: makes aiohttp's per-connection protocol.
        self.http_handler_factory: Callable[[], asyncio.Protocol] | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self.app.router.add_route("*", api_prefix or "/", self._with_api_auth(self.legacy_api))
        self.app.router.add_route("*", f"{api_prefix}/{{method}}", self._with_api_auth(self.api_method))
        self.app.router.add_route("GET", "/health", self.health)
        self.app.router.add_route("GET", "/ready", self.ready)
        if cfg.prometheus:
            self._metrics = Metrics(node)
            self.app.router.add_route("GET", "/metrics", self.metrics)

    # --- listening

    async def start(
        self, address: str, port: int, *, reuse_port: bool = False, sock: socket.socket | None = None
    ) -> None:
        """Listen (on ``sock`` when a supervisor passed one): every connection starts with a
        PortProtocol (see the module docstring)."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        self.http_handler_factory = server
        loop = asyncio.get_running_loop()
        # A generous backlog: a reconnect storm arrives all at once.
        if sock is not None:
            self._listener = await loop.create_server(self.protocol, sock=sock, backlog=4096)
        else:
            self._listener = await loop.create_server(
                self.protocol, address or None, port, backlog=4096, reuse_port=reuse_port or None
            )

    def stop_listening(self) -> None:
        self.accepting = False
        if self._listener is not None:
            self._listener.close()

    async def close(self) -> None:
        """Stop listening and close HTTP connections (WebSockets are drained by the node)."""
        self.stop_listening()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- health

    async def health(self, request: web.Request) -> web.Response:
        if not self.accepting or self.node.shutting_down:
            return web.json_response({"status": "shutting down"}, status=503)
        return web.json_response({})

    async def ready(self, request: web.Request) -> web.Response:
        """Readiness for load balancers: 503 while draining or while the engine is unusable, so
        new clients go to nodes that can serve them (``/health`` stays the liveness check)."""
        if not self.accepting or self.node.shutting_down:
            return web.json_response({"status": "shutting down"}, status=503)
        if not self.node.broker.online:
            return web.json_response({"status": "engine unavailable"}, status=503)
        return web.json_response({})

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    # --- client transports (see PortProtocol)

    def _client_transports(self) -> dict[bytes, StreamVariant]:
        """The streaming transports switched on, by path (spec §1.1)."""
        cfg = self.node.config
        streams: dict[bytes, StreamVariant] = {}
        if self.emulation is not None:
            if cfg.http_stream:
                streams[cfg.http_stream_handler_prefix.rstrip("/").encode()] = HttpStream(self.emulation)
            if cfg.sse:
                streams[cfg.sse_handler_prefix.rstrip("/").encode()] = Sse(self.emulation)
        if cfg.uni_http_stream:
            streams[cfg.uni_http_stream_handler_prefix.rstrip("/").encode()] = UniHttpStream()
        if cfg.uni_sse:
            streams[cfg.uni_sse_handler_prefix.rstrip("/").encode()] = UniSse()
        return streams

    def is_websocket_path(self, target: bytes) -> tuple[bool, dict[str, list[str]]]:
        """Whether a request target is the WebSocket endpoint, and its query parameters."""
        path, _, query = target.partition(b"?")
        if path.rstrip(b"/") != self._ws_path:
            return False, {}
        return True, parse_qs(query.decode("latin-1")) if query else {}

    def stream_variant(self, target: bytes) -> StreamVariant | None:
        """The streaming transport a request target is for, if any (methods are its to check)."""
        return self._streams.get(target.partition(b"?")[0].rstrip(b"/"))

    def is_uni_websocket(self, method: bytes, target: bytes) -> bool:
        return (
            method == b"GET"
            and self._uni_ws_path is not None
            and target.partition(b"?")[0].rstrip(b"/") == self._uni_ws_path
        )

    def admit(
        self, origin: str | None, query: dict[str, list[str]], transport: str = "websocket"
    ) -> tuple[int, str] | None:
        """None to accept an upgrade, or (HTTP status, message) to refuse it cheaply (counted by
        reason, one log line each)."""
        cfg = self.node.config
        counters = self.node.counters
        refusal: tuple[int, str] | None = None
        if not origin_allowed(origin, cfg.allowed_origins):
            counters.bump(counters.refused, "origin")
            refusal = 403, "origin not allowed"
        elif not self.accepting or self.node.shutting_down:
            counters.bump(counters.refused, "shutdown")
            refusal = 503, "shutting down"
        elif self._admission is not None and not self._admission.take():
            # Refuse cheaply during a reconnect storm; the SDKs back off with jitter (decisions §5).
            counters.bump(counters.refused, "rate")
            refusal = 503, "too many connections, retry later"
        if refusal is not None:
            connlog.upgrade_refused(transport, *refusal)
            return refusal
        counters.connections += 1
        return None

    def protocol(self) -> PortProtocol:
        """The protocol factory for the listening socket."""
        return PortProtocol(self)

    def http_protocol(self) -> asyncio.Protocol:
        assert self.http_handler_factory is not None, "the aiohttp runner is not set up"
        return self.http_handler_factory()

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
        if not is_utf8(body):  # never passed on inside embedded JSON (see codecs/json.py)
            return web.Response(status=400, text="Bad Request")
        started = time.perf_counter()
        try:
            result = await self.api.call(method, body, scope)
        except BadRequest:
            return web.Response(status=400, text="Bad Request")
        except ReplyError as exc:
            errors.spent(exc)
            return self._api_error(request, exc, method)
        except Exception:
            log.exception("server API %s failed", method)
            return self._api_error(request, errors.API_ERROR_INTERNAL, method)
        finally:
            # By method, a known one (checked above): the label set stays bounded.
            self.node.counters.api_latency.observe(method, time.perf_counter() - started)
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
        if not is_utf8(body):
            return web.Response(status=400, text="Bad Request")
        replies: list[bytes] = []
        try:
            commands = [_legacy_decoder.decode(line) for line in body.split(b"\n") if line.strip()]
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
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
            started = time.perf_counter()
            try:
                if not self.api.knows(method):
                    raise errors.API_ERROR_NOT_FOUND
                reply["result"] = await self.api.call(method, bytes(cmd.params) or b"{}", scope)
            except BadRequest:
                reply["error"] = {"code": 107, "message": "bad request"}
            except ReplyError as exc:
                errors.spent(exc)
                reply["error"] = {"code": exc.code, "message": exc.message}
            except Exception:
                log.exception("server API %s failed", method)
                reply["error"] = {"code": 100, "message": "internal server error"}
            if self.api.knows(method):
                self.node.counters.api_latency.observe(method, time.perf_counter() - started)
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


class PortProtocol(asyncio.Protocol):
    """Reads a connection's first request head and hands the connection to its real protocol."""

    __slots__ = ("_head", "_server", "_transport")

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._head = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport, hence no isinstance).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        head = self._head + data if self._head else data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > _MAX_HEAD:
                transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n")
                transport.close()
            else:
                self._head = head
            return
        line = head[: head.find(b"\r\n")].split(b" ")
        server = self._server
        is_ws, query = server.is_websocket_path(line[1]) if len(line) == 3 and line[0] == b"GET" else (False, {})
        stream = server.stream_variant(line[1]) if len(line) == 3 and not is_ws else None
        if is_ws or (len(line) == 3 and server.is_uni_websocket(line[0], line[1])):
            if not is_ws:
                query = parse_qs(line[1].partition(b"?")[2].decode("latin-1"))
            native = query.get("cf_ws_frame_ping_pong", [""])[0] == "true"
            cls = WebSocketConnection if is_ws else UniWebSocketConnection
            ws = cls(server.node, transport, app_pings=not native)
            transport.set_protocol(ws)
            ws.handshake(head, lambda origin: server.admit(origin, query, ws.transport_name()), query)
        elif stream is not None:
            self._stream(transport, head, end, stream)
        else:
            http = server.http_protocol()
            transport.set_protocol(http)
            http.connection_made(transport)
            http.data_received(head)

    def _stream(self, transport: asyncio.Transport, head: bytes, end: int, variant: StreamVariant) -> None:
        request: Request | None = parse_head(head[:end])
        if request is None:
            transport.write(http_response(400, b"malformed request head"))
            transport.close()
            return
        server = self._server
        conn = StreamConnection(server.node, transport, variant)
        transport.set_protocol(conn)
        conn.begin(request, head[end + 4 :], functools.partial(server.admit, transport=variant.name))

    def eof_received(self) -> bool | None:
        return None  # nothing useful arrived: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
