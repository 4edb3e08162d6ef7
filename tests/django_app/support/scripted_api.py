"""A real HTTP server in the test process that plays the gateway's API, one scripted answer
per request: ``api.script(reply(503), reply(503))`` then the default, :func:`applied`.

"Applied" emulates the gateway's publish with its idempotency rule (decisions §6): a
repeat of an ``idempotency_key`` returns the first result and is not delivered again, so
``api.delivered(channel)`` counts what subscribers would have received.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.timing import seconds


@dataclass
class Seen:
    """One request as the server received it."""

    at: float  # time.monotonic()
    method: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it was not JSON
    peer: tuple[str, int]  # the client's address: one per pooled connection

    @property
    def channel(self) -> str | None:
        return self.body.get("channel") if isinstance(self.body, dict) else None

    @property
    def idempotency_key(self) -> str | None:
        return self.body.get("idempotency_key") if isinstance(self.body, dict) else None

    @property
    def publishes(self) -> list[dict[str, Any]]:
        """The publish parameters in this request: itself, or each publish of a batch."""
        if self.method == "publish" and isinstance(self.body, dict):
            return [self.body]
        if self.method == "batch" and isinstance(self.body, dict):
            return [c["publish"] for c in self.body.get("commands", []) if isinstance(c, dict) and "publish" in c]
        return []


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


Action = Callable[["ScriptedApi", Seen], Answer | None]


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Action:
    """Answer with ``status`` and a JSON (or, for ``str``/``bytes``, raw) body."""

    def act(api: ScriptedApi, seen: Seen) -> Answer:
        if isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body if body is not None else {}).encode()
        return Answer(status, raw, dict(headers or {}))

    return act


def applied() -> Action:
    """Publish like the gateway: deliver once per idempotency key, answer with the first result
    (each publish of a batch in turn)."""

    def act(api: ScriptedApi, seen: Seen) -> Answer:
        if seen.method == "batch":
            replies = [
                {"publish": api.apply(Seen(seen.at, "publish", seen.headers, params, seen.peer))}
                for params in seen.publishes
            ]
            return Answer(200, json.dumps({"replies": replies}).encode())  # not wrapped (spec §8.2)
        return Answer(200, json.dumps({"result": api.apply(seen)}).encode())

    return act


def applied_then_stall() -> Action:
    """Apply the publish, then hold the answer until the client gave up and tried again."""

    def act(api: ScriptedApi, seen: Seen) -> Answer | None:
        result = api.apply(seen)
        api.wait_until(lambda: len(api.seen(seen.channel)) >= 2, seconds(10))
        return Answer(200, json.dumps({"result": result}).encode())

    return act


def forward(api_url: str) -> Action:
    """Relay the request to a real gateway and its answer back."""

    def act(api: ScriptedApi, seen: Seen) -> Answer:
        return _relay(api_url, seen)

    return act


def forward_then_stall(api_url: str) -> Action:
    """Relay to a real gateway (which applies it), then hold the answer past the client's timeout."""

    def act(api: ScriptedApi, seen: Seen) -> Answer | None:
        answer = _relay(api_url, seen)
        api.wait_until(lambda: len(api.seen(seen.channel)) >= 2, seconds(10))
        return answer

    return act


def forward_then_hold(api_url: str, release: threading.Event) -> Action:
    """Relay to a real gateway (which applies it), then hold the answer until ``release`` is set."""

    def act(api: ScriptedApi, seen: Seen) -> Answer | None:
        answer = _relay(api_url, seen)
        release.wait(seconds(30))
        return answer

    return act


def _relay(api_url: str, seen: Seen) -> Answer:
    request = urllib.request.Request(
        f"{api_url}/{seen.method}",
        data=json.dumps(seen.body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": seen.headers.get("x-api-key", "")},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=seconds(5)) as response:
            return Answer(response.status, response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, exc.read())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: ScriptedApi


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, like the gateway: the client's pooled connections are reused.
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test asserts on what was seen; per-request lines are noise

    def do_POST(self) -> None:
        api = self.server.api
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        method = self.path.rstrip("/").rsplit("/", 1)[-1]
        headers = {k.lower(): v for k, v in self.headers.items()}
        seen = Seen(time.monotonic(), method, headers, body, self.client_address)
        action = api.record(seen)
        answer = action(api, seen)
        if answer is None:
            self.close_connection = True
            return
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError:
            # The client timed out and closed its end while we stalled: expected.
            self.close_connection = True


class ScriptedApi:
    def __init__(self, port: int = 0) -> None:
        self._cond = threading.Condition()
        self._script: deque[Action] = deque()
        self._seen: list[Seen] = []
        self._results: dict[tuple[str, str], dict[str, Any]] = {}
        self._delivered: list[Seen] = []
        #: What answers once the script is used up (None: :func:`applied`).
        self.default: Action | None = None
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.api = self
        self._connections: set[socket.socket] = set()
        self._closing = False
        original_process_request = self._server.process_request

        def process_request(request: Any, client_address: Any) -> None:
            with self._cond:
                self._connections.add(request)
            original_process_request(request, client_address)

        self._server.process_request = process_request  # type: ignore[method-assign]
        original_shutdown_request = self._server.shutdown_request

        def shutdown_request(request: Any) -> None:
            with self._cond:
                self._connections.discard(request)
            original_shutdown_request(request)

        self._server.shutdown_request = shutdown_request  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-api", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    # -- scripting ----------------------------------------------------------------------

    def script(self, *actions: Action) -> None:
        """Answers for the next requests, in order; after them, :func:`applied`."""
        with self._cond:
            self._script.extend(actions)

    def reset(self) -> None:
        with self._cond:
            self._script.clear()
            self.default = None
            self._seen.clear()
            self._results.clear()
            self._delivered.clear()

    # -- used by the handler ----------------------------------------------------------------

    def record(self, seen: Seen) -> Action:
        with self._cond:
            self._seen.append(seen)
            self._cond.notify_all()
            if self._script:
                return self._script.popleft()
            return self.default or applied()

    def apply(self, seen: Seen) -> dict[str, Any]:
        with self._cond:
            key = seen.idempotency_key
            if key and (seen.channel or "", key) in self._results:
                return self._results[(seen.channel or "", key)]
            self._delivered.append(seen)
            result = {"offset": len(self._delivered), "epoch": "scripted"}
            if key:
                self._results[(seen.channel or "", key)] = result
            self._cond.notify_all()
            return result

    # -- observations ------------------------------------------------------------------------

    def seen(self, channel: str | None = None) -> list[Seen]:
        with self._cond:
            return [s for s in self._seen if channel is None or s.channel == channel]

    def delivered(self, channel: str | None = None) -> list[Seen]:
        with self._cond:
            return [s for s in self._delivered if channel is None or s.channel == channel]

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closing:
                    return predicate()
                self._cond.wait(min(remaining, 0.1))
            return True

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            connections = list(self._connections)
        self._server.shutdown()
        # Keep-alive connections would hold their handler threads after shutdown().
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(seconds(5))


def scripted_api(port: int = 0) -> Iterator[ScriptedApi]:
    api = ScriptedApi(port)
    try:
        yield api
    finally:
        api.close()
