"""A small real application backend for the gateway's proxy calls: an aiohttp app on a free
loopback port, served from its own thread (so one backend can outlive the tests' event loops
and be started before the gateway process that calls it).

    with AppBackend() as backend:
        backend.answer("connect", lambda call: {"result": {"user": "42"}})
        ... a gateway with "proxy_connect_endpoint": backend.url("connect") ...
        assert backend.calls("connect")[0].body["client"]

An answer is a JSON-able object (status 200), a :class:`Reply` (any status, raw body, a delay),
or a callable of the :class:`Call` returning one of those. The backend records every call, the
largest number it was serving at once, and the TCP connections the calls came on.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.support.ports import free_port

KINDS = ("connect", "refresh", "subscribe", "publish", "sub_refresh", "rpc")


@dataclass
class Call:
    kind: str
    body: dict[str, Any]
    headers: dict[str, str]  # names lowercased (the last value of a repeated name)
    connection: int  # which TCP connection it came on (the peer's port)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    delay: float = 0.0  # seconds before answering

    @classmethod
    def json(cls, payload: object, delay: float = 0.0) -> Reply:
        return cls(200, json.dumps(payload).encode(), delay)


Answer = Reply | dict[str, Any] | Callable[[Call], "Reply | dict[str, Any]"]


@dataclass
class AppBackend:
    port: int = field(default_factory=free_port)
    answers: dict[str, Answer] = field(default_factory=dict)
    recorded: list[Call] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}/centrifugo/{kind}"

    def endpoints(self, *kinds: str, timeout: str = "") -> dict[str, str]:
        """Config keys pointing the gateway's proxies of ``kinds`` (all by default) here."""
        config = {f"proxy_{kind}_endpoint": self.url(kind) for kind in kinds or KINDS}
        if timeout:
            config.update({f"proxy_{kind}_timeout": timeout for kind in kinds or KINDS})
        return config

    def answer(self, kind: str, answer: Answer) -> None:
        self.answers[kind] = answer

    def calls(self, kind: str = "") -> list[Call]:
        return [call for call in list(self.recorded) if not kind or call.kind == kind]

    def connections(self) -> set[int]:
        return {call.connection for call in list(self.recorded)}

    def reset(self) -> None:
        self.answers.clear()
        self.recorded.clear()
        self.peak = 0

    # --- serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        peer = request.transport.get_extra_info("peername") if request.transport else None
        call = Call(
            kind=kind,
            body=await request.json(),
            headers={name.lower(): value for name, value in request.headers.items()},
            connection=peer[1] if peer else 0,
        )
        self.recorded.append(call)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            answer = self.answers.get(kind, {})
            if callable(answer):
                answer = answer(call)
            reply = answer if isinstance(answer, Reply) else Reply.json(answer)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            return web.Response(status=reply.status, body=reply.body, content_type="application/json")
        finally:
            self.in_flight -= 1

    def _serve(self, started: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/centrifugo/{kind}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def __enter__(self) -> AppBackend:
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the test backend did not start")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
