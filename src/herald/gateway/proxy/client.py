"""The HTTP client that calls the application backend: the only code in Herald that does.

One ``aiohttp.ClientSession`` per node with a keep-alive connection pool, so a steady stream of
proxy calls reuses a few TCP connections rather than opening one per call (proxy.md §2: Go's
pooled client does the same). Each call is one ``POST`` of a JSON body with its kind's timeout
covering everything (waiting for a free slot, connecting, sending, reading the body); no
retries (proxy.md §0).

Storm safety: at most ``proxy_max_concurrency`` calls are in flight per node. A reconnect storm
of token-less clients must not pile up behind a slow backend, so a ``connect`` that finds every
slot busy fails at once with :class:`ProxyBusy` (the session closes it with a reconnect code,
and the SDK backs off with jitter); the other kinds come from clients already connected and
wait for a slot within their timeout.

Outcomes: a :class:`ProxyFailure` for what proxy.md §4 calls a transport failure (timeout,
connection error, a status other than 200, a body that is not the expected JSON object);
otherwise the decoded response, whose ``error``/``disconnect`` the session interprets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Final, TypeVar

import aiohttp
import msgspec
from multidict import CIMultiDict

from herald.gateway.config import PROXY_KINDS, Config

log = logging.getLogger(__name__)

T = TypeVar("T")
Headers = tuple[tuple[str, str], ...]

# How long an idle pooled connection to the backend is kept open.
KEEPALIVE_TIMEOUT: Final = 30.0

_encoder: Final = msgspec.json.Encoder()


class ProxyFailure(Exception):
    """The backend could not be asked or did not answer usably (proxy.md §4 "transport failure")."""


class ProxyBusy(ProxyFailure):
    """Every proxy slot of this node is in use (a connect does not wait for one)."""


class Proxy:
    """Proxy endpoints of one node, their shared connection pool and concurrency bound."""

    def __init__(self, config: Config) -> None:
        self.endpoints: dict[str, tuple[str, float]] = {}
        for kind in PROXY_KINDS:
            url = getattr(config, f"proxy_{kind}_endpoint")
            if url:
                self.endpoints[kind] = (url, getattr(config, f"proxy_{kind}_timeout"))
        # Lowercased names of the client request headers to forward (proxy.md §1.1).
        self.forwarded: frozenset[str] = frozenset(name.lower() for name in config.proxy_http_headers)
        self.binary = config.proxy_binary_encoding
        self.include_meta = config.proxy_include_connection_meta
        self._static = config.proxy_static_http_headers
        self.limit = config.proxy_max_concurrency
        self._slots = asyncio.Semaphore(self.limit)
        self._session: aiohttp.ClientSession | None = None
        self.in_flight = 0
        # Calls by (kind, outcome): "ok", "failure", "busy". Bounded labels for /metrics.
        self.calls: dict[tuple[str, str], int] = {}

    def enabled(self, kind: str) -> bool:
        return kind in self.endpoints

    def headers(self, forwarded: Headers) -> CIMultiDict[str]:
        """Static headers, overridden by the client's forwarded ones; Content-Type last (proxy.md §2)."""
        headers: CIMultiDict[str] = CIMultiDict(self._static)
        for name in {name for name, _ in forwarded}:
            headers.popall(name, None)
        headers.extend(forwarded)
        headers["Content-Type"] = "application/json"
        return headers

    async def call(self, kind: str, body: msgspec.Struct, forwarded: Headers, response: type[T]) -> T:
        """POST ``body`` to the ``kind`` endpoint and decode the answer as ``response``."""
        url, timeout = self.endpoints[kind]
        if kind == "connect" and self._slots.locked():
            self._count(kind, "busy")
            raise ProxyBusy(f"all {self.limit} proxy slots busy")
        try:
            async with asyncio.timeout(timeout):
                async with self._slots:
                    self.in_flight += 1
                    try:
                        status, payload = await self._post(url, _encoder.encode(body), self.headers(forwarded))
                    finally:
                        self.in_flight -= 1
        except TimeoutError:
            self._count(kind, "failure")
            raise ProxyFailure(f"no answer within {timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            self._count(kind, "failure")
            raise ProxyFailure(f"request failed: {exc.__class__.__name__}: {exc}") from None
        if status != 200:
            self._count(kind, "failure")
            raise ProxyFailure(f"status {status}")
        try:
            decoded = msgspec.json.decode(payload, type=response)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            self._count(kind, "failure")
            raise ProxyFailure(f"invalid response body: {exc}") from None
        self._count(kind, "ok")
        return decoded

    async def _post(self, url: str, body: bytes, headers: CIMultiDict[str]) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            # Made on first use: a ClientSession belongs to the running event loop.
            connector = aiohttp.TCPConnector(limit=self.limit, keepalive_timeout=KEEPALIVE_TIMEOUT)
            session = self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        # No redirects: a redirected POST would reach the backend as something else (proxy.md
        # §8.11); a 3xx is a failure like any status but 200, and the log says which.
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            return resp.status, await resp.read()

    def _count(self, kind: str, outcome: str) -> None:
        key = (kind, outcome)
        self.calls[key] = self.calls.get(key, 0) + 1

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def forwarded_headers(proxy: Proxy | None, headers: Mapping[str, str]) -> Headers:
    """The allow-listed headers of a client's HTTP request (names lowercased in ``headers``), in
    canonical form (``X-Request-Id``); kept for the connection's lifetime (proxy.md §2, §8.4)."""
    if proxy is None or not proxy.forwarded:
        return ()
    return tuple(
        ("-".join(part.capitalize() for part in name.split("-")), value)
        for name, value in headers.items()
        if name in proxy.forwarded
    )


def build_proxy(config: Config) -> Proxy | None:
    """The node's proxy, or None when no proxy endpoint is configured."""
    proxy = Proxy(config)
    return proxy if proxy.endpoints else None
