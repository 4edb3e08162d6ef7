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
from dataclasses import dataclass
from typing import Final, TypeVar

import aiohttp
import msgspec
from multidict import CIMultiDict

from herald import errors
from herald.gateway.config import PROXY_KINDS, ChannelOptions, Config

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


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one proxy sends its calls, and how (proxy.md §1.1; a named proxy, §1.2)."""

    url: str
    timeout: float
    forwarded: frozenset[str] = frozenset()  # lowercased client request header names
    static: Headers = ()
    binary: bool = False
    include_meta: bool = False


class Proxy:
    """Proxy endpoints of one node, their shared connection pool and concurrency bound.

    In the default mode there is one endpoint per event kind, sharing the ``proxy_*`` options;
    in ``granular_proxy_mode`` each named proxy of ``proxies`` is an endpoint with its own.
    """

    def __init__(self, config: Config) -> None:
        self.granular = config.granular_proxy_mode
        # By event kind (default mode) or by proxy name (granular mode).
        self.endpoints: dict[str, Endpoint] = {}
        if self.granular:
            for named in config.proxies:
                self.endpoints[named.name] = Endpoint(
                    named.endpoint,
                    named.timeout,
                    frozenset(name.lower() for name in named.http_headers),
                    named.static_http_headers,
                    named.binary_encoding,
                    named.include_connection_meta,
                )
        else:
            forwarded = frozenset(name.lower() for name in config.proxy_http_headers)
            for kind in PROXY_KINDS:
                url = getattr(config, f"proxy_{kind}_endpoint")
                if url:
                    self.endpoints[kind] = Endpoint(
                        url,
                        getattr(config, f"proxy_{kind}_timeout"),
                        forwarded,
                        config.proxy_static_http_headers,
                        config.proxy_binary_encoding,
                        config.proxy_include_connection_meta,
                    )
        self._config = config
        # What a connection keeps of its client's request: any header some proxy forwards.
        self.forwarded: frozenset[str] = frozenset().union(*(e.forwarded for e in self.endpoints.values()))
        self.limit = config.proxy_max_concurrency
        self._slots = asyncio.Semaphore(self.limit)
        self._session: aiohttp.ClientSession | None = None
        self.in_flight = 0
        # Calls by (kind, outcome): "ok", "failure", "busy". Bounded labels for /metrics.
        self.calls: dict[tuple[str, str], int] = {}

    # --- which endpoint serves an event (None: the event is not proxied)

    def _named(self, name: str) -> Endpoint | None:
        return self.endpoints.get(name) if name else None

    def connect_endpoint(self) -> Endpoint | None:
        return self._named(self._config.connect_proxy_name if self.granular else "connect")

    def refresh_endpoint(self) -> Endpoint | None:
        return self._named(self._config.refresh_proxy_name if self.granular else "refresh")

    def channel_proxied(self, kind: str, opts: ChannelOptions) -> bool:
        """Whether a channel's options ask for the ``kind`` proxy (subscribe, publish, sub_refresh)."""
        return bool(getattr(opts, f"{kind}_proxy_name") if self.granular else getattr(opts, f"proxy_{kind}"))

    def channel_endpoint(self, kind: str, opts: ChannelOptions) -> Endpoint | None:
        return self._named(getattr(opts, f"{kind}_proxy_name") if self.granular else kind)

    def rpc_endpoint(self, method: str) -> Endpoint:
        """The endpoint of an RPC method; 104 for a method of an undeclared RPC namespace, 108
        for one no proxy serves (proxy.md §1.1, §1.2)."""
        cfg = self._config
        if not self.granular:
            endpoint = self.endpoints.get("rpc")
        else:
            namespace, sep, _ = method.partition(cfg.rpc_namespace_boundary)
            if not sep:
                endpoint = self._named(cfg.rpc_proxy_name)
            else:
                declared = next((ns for ns in cfg.rpc_namespaces if ns.name == namespace), None)
                if declared is None:
                    raise errors.ERROR_METHOD_NOT_FOUND
                endpoint = self._named(declared.rpc_proxy_name)
        if endpoint is None:
            raise errors.ERROR_NOT_AVAILABLE
        return endpoint

    # --- calls

    @staticmethod
    def headers(endpoint: Endpoint, forwarded: Headers) -> CIMultiDict[str]:
        """Static headers, overridden by the client's allow-listed ones; Content-Type last (proxy.md §2)."""
        headers: CIMultiDict[str] = CIMultiDict(endpoint.static)
        mine = [(name, value) for name, value in forwarded if name.lower() in endpoint.forwarded]
        for name in {name for name, _ in mine}:
            headers.popall(name, None)
        headers.extend(mine)
        headers["Content-Type"] = "application/json"
        return headers

    async def call(
        self, kind: str, endpoint: Endpoint, body: msgspec.Struct, forwarded: Headers, response: type[T]
    ) -> T:
        """POST ``body`` to ``endpoint`` for a ``kind`` event and decode the answer as ``response``."""
        url, timeout = endpoint.url, endpoint.timeout
        if kind == "connect" and self._slots.locked():
            self._count(kind, "busy")
            raise ProxyBusy(f"all {self.limit} proxy slots busy")
        try:
            async with asyncio.timeout(timeout):
                async with self._slots:
                    self.in_flight += 1
                    try:
                        status, payload = await self._post(
                            url, _encoder.encode(body), self.headers(endpoint, forwarded)
                        )
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
