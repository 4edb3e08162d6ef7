"""The admin UI's HTTP endpoints, under ``/admin`` on the gateway's port.

* ``GET /admin/``: the page (static files shipped in this package, no build step).
* ``POST /admin/auth`` ``{"password": ...}``: a session cookie (HttpOnly, SameSite=Strict),
  or 401 / 429 as JSON. ``POST /admin/logout`` ends it.
* ``POST /admin/api/<method>``: any server API method, run by ``ServerAPI.call`` exactly as
  ``/api/<method>`` runs it (same decoding, channel-name checks and namespace rules) with the
  unbound scope of the ``api_key``. Errors come as JSON with an HTTP status, so the page needs
  no special case: ``{"error": {"code": 107, "message": "bad request"}}`` with 400.
* ``GET /admin/watch?channel=<name>``: Server-Sent Events of the channel's publications.

Every endpoint but the page and login needs the session cookie (401 JSON otherwise). POSTs
must be JSON and, when the browser says where they come from, same-origin (403 otherwise):
with the SameSite=Strict cookie, another site cannot make the admin's browser act.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from herald import errors
from herald.errors import ReplyError
from herald.gateway.admin.checks import ADMIN_PATH
from herald.gateway.admin.session import FAILURE_DELAY, LoginGuard, Sessions
from herald.gateway.admin.watch import Watcher
from herald.gateway.api import BadRequest, ServerAPI
from herald.gateway.codecs.json import is_utf8
from herald.gateway.node import Node, reply_error_for_api

log = logging.getLogger(__name__)

PREFIX: Final = ADMIN_PATH
COOKIE: Final = "herald_admin"
WATCH_PING: Final = 25.0  # an SSE comment this often keeps proxies from closing an idle watch
WATCH_GONE_CHECK: Final = 1.0  # how soon a watch notices its page went away (then unsubscribes)
MAX_BODY: Final = 1024 * 1024
# API error code -> HTTP status (the API's transport error mode, spec §8.1; 103 -> 403).
_STATUS: Final = {100: 500, 102: 404, 103: 403, 104: 404, 107: 400, 108: 400, 112: 416, 113: 409}
_STATIC: Final = {
    "admin.js": "text/javascript",
    "admin.css": "text/css",
}
# The page loads only its own script and style, and may not be framed (clickjacking).
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_encode = msgspec.json.encode


class _Login(msgspec.Struct):
    password: str


def _static(name: str) -> bytes:
    return (resources.files("herald.gateway.admin") / "static" / name).read_bytes()


def _error(status: int, message: str, code: int = 0, headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message}
    if code:
        body["code"] = code
    return web.Response(
        body=_encode({"error": body}),
        status=status,
        content_type="application/json",
        headers={**_PAGE_HEADERS, **(headers or {})},
    )


def _json(data: Any, **headers: str) -> web.Response:
    return web.Response(body=_encode(data), content_type="application/json", headers={**_PAGE_HEADERS, **headers})


class Admin:
    def __init__(self, node: Node, api: ServerAPI) -> None:
        config = node.config
        self.node = node
        self.api = api
        self.sessions = Sessions(config.admin_password, config.admin_secret)
        self.guard = LoginGuard()
        self.watchers: set[Watcher] = set()
        self._page = _static("index.html")
        self._files = {name: (_static(name), kind) for name, kind in _STATIC.items()}

    def mount(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Handler]] = [
            ("GET", PREFIX, self.to_page),
            ("GET", f"{PREFIX}/", self.page),
            ("GET", f"{PREFIX}/static/{{name}}", self.static),
            ("POST", f"{PREFIX}/auth", self.login),
            ("POST", f"{PREFIX}/logout", self.logout),
            ("POST", f"{PREFIX}/api/{{method}}", self.call),
            ("GET", f"{PREFIX}/watch", self.watch),
        ]
        for method, path, handler in routes:
            app.router.add_route("*", path, _only(method, handler))
        # Anything else under /admin: a JSON 404, like every other admin error.
        app.router.add_route("*", f"{PREFIX}/{{rest:.*}}", self.not_found)
        app.on_shutdown.append(self._close_watchers)

    async def not_found(self, request: web.Request) -> web.Response:
        return _error(404, "not found")

    # --- page

    async def to_page(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{PREFIX}/")

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)

    async def static(self, request: web.Request) -> web.Response:
        found = self._files.get(request.match_info["name"])
        if found is None:
            return _error(404, "not found")
        body, kind = found
        return web.Response(body=body, content_type=kind, charset="utf-8", headers=_PAGE_HEADERS)

    # --- sessions

    def _authenticated(self, request: web.Request) -> bool:
        token = request.cookies.get(COOKIE, "")
        return bool(token) and self.sessions.valid(token)

    @staticmethod
    def _refusal(request: web.Request) -> web.Response | None:
        """403 for a POST from another origin, 415 for one that is not JSON."""
        origin = request.headers.get("Origin")
        if origin is not None and (urlsplit(origin).netloc or origin) != request.host:
            return _error(403, "cross-origin request refused")
        if request.content_type != "application/json":
            return _error(415, "the body must be JSON (Content-Type: application/json)")
        return None

    async def login(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        body = await _body(request)
        if body is None:
            return _error(413, "request body too large")
        try:
            password = msgspec.json.decode(body, type=_Login).password
        except (msgspec.DecodeError, msgspec.ValidationError):
            return _error(400, 'the body must be {"password": "..."}')
        address = request.remote or ""
        wait = self.guard.locked_for(address)
        if wait:
            # Even the right password is refused while locked: otherwise the lock tells nothing.
            retry = {"Retry-After": str(max(1, round(wait)))}
            return _error(429, "too many wrong passwords; try again later", headers=retry)
        if not self.sessions.password_matches(password):
            self.guard.failed(address)
            log.warning("admin login refused: wrong password from %s", address)
            await asyncio.sleep(FAILURE_DELAY)  # slows a guesser down; the lock-out stops it
            return _error(401, "wrong password")
        self.guard.succeeded(address)
        token, expires = self.sessions.issue()
        log.info("admin logged in from %s", address)
        response = _json({"expires_at": expires})
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(self.sessions.ttl),
            path=PREFIX,
            httponly=True,
            samesite="Strict",
            secure=_over_tls(request),
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        self.sessions.end(request.cookies.get(COOKIE, ""))
        response = _json({})
        response.del_cookie(COOKIE, path=PREFIX)
        return response

    # --- server API

    async def call(self, request: web.Request) -> web.Response:
        if not self._authenticated(request):
            return _error(401, "log in first")
        refused = self._refusal(request)
        if refused is not None:
            return refused
        method = request.match_info["method"]
        if not self.api.knows(method):
            return _error(404, f"no API method {method!r}", code=104)
        body = await _body(request)
        if body is None:
            return _error(413, "request body too large")
        if not is_utf8(body):
            return _error(400, "the body must be UTF-8 JSON", code=107)
        self.node.counters.bump(self.node.counters.api_requests, method)
        try:
            # The unbound scope: the admin may do whatever the unbound api_key may.
            result = await self.api.call(method, body, "")
        except BadRequest as exc:
            return _error(400, f"bad request: {exc}", code=107)
        except ReplyError as exc:
            errors.spent(exc)
            return _error(_STATUS.get(exc.code, 500), exc.message, code=exc.code)
        except Exception:
            log.exception("admin API %s failed", method)
            return _error(500, "internal server error", code=100)
        return _json({"result": result})

    # --- watch

    async def watch(self, request: web.Request) -> web.StreamResponse:
        if not self._authenticated(request):
            return _error(401, "log in first")
        channel = request.query.get("channel", "")
        if not channel:
            return _error(400, "name a channel: ?channel=<name>", code=107)
        try:
            self.node.options(channel)  # the API's checks: 107 for a bad name, 102 unknown namespace
        except ReplyError as exc:
            errors.spent(exc)
            api_error = reply_error_for_api(exc)
            return _error(_STATUS.get(api_error.code, 500), api_error.message, code=api_error.code)
        watcher = Watcher(self.node, channel)
        self.watchers.add(watcher)
        try:
            await watcher.start()
        except Exception:
            self.watchers.discard(watcher)
            await watcher.stop()
            log.exception("admin watch of %s failed", channel)
            return _error(500, "internal server error", code=100)
        try:
            return await self._stream(request, watcher, channel)
        finally:
            self.watchers.discard(watcher)
            await watcher.stop()

    async def _stream(self, request: web.Request, watcher: Watcher, channel: str) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={**_PAGE_HEADERS, "Content-Type": "text/event-stream; charset=utf-8", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(b"event: subscribed\ndata: " + _encode({"channel": channel}) + b"\n\n")
            loop = asyncio.get_running_loop()
            quiet_since = loop.time()
            while True:
                try:
                    data = await asyncio.wait_for(watcher.queue.get(), WATCH_GONE_CHECK)
                except TimeoutError:
                    # aiohttp does not cancel a handler whose client left: look, and stop then.
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        break
                    if loop.time() - quiet_since >= WATCH_PING:
                        await response.write(b": ping\n\n")
                        quiet_since = loop.time()
                    continue
                quiet_since = loop.time()
                if data is None:
                    if watcher.overflowed:
                        await response.write(b'event: overflow\ndata: {"message":"the page fell behind"}\n\n')
                    break
                await response.write(b"data: " + data + b"\n\n")
        return response

    async def _close_watchers(self, app: web.Application) -> None:
        for watcher in list(self.watchers):
            watcher.close()


async def _body(request: web.Request) -> bytes | None:
    """The whole request body, or None when it is larger than MAX_BODY."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    try:
        body = await request.read()  # bounded by the application's client_max_size too
    except web.HTTPRequestEntityTooLarge:
        return None
    return body if len(body) <= MAX_BODY else None


def _over_tls(request: web.Request) -> bool:
    # Behind a TLS-terminating proxy the request arrives as plain HTTP; the proxy says so.
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _only(method: str, handler: Handler) -> Handler:
    """The handler for one HTTP method; others get a JSON 405 (HEAD goes with GET)."""
    allowed = {method, "HEAD"} if method == "GET" else {method}

    async def route(request: web.Request) -> web.StreamResponse:
        if request.method not in allowed:
            return _error(405, f"use {method}", headers={"Allow": method})
        return await handler(request)

    return route


def mount_admin(app: web.Application, node: Node, api: ServerAPI) -> Admin:
    """Add the admin routes to the gateway's HTTP application (before it starts)."""
    admin = Admin(node, api)
    admin.mount(app)
    return admin
