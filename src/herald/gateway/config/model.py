"""The typed, frozen settings: server keys, channel options, scoped keys, proxies (spec §7, §10.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

NAMESPACE_NAME_RE: Final = re.compile(r"^[-a-zA-Z0-9_.]{2,}$")


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """Options of the top level or of one namespace (spec §7 table, without proxies and delta)."""

    presence: bool = False
    join_leave: bool = False
    force_push_join_leave: bool = False
    history_size: int = 0
    history_ttl: float = 0.0
    history_meta_ttl: float = 0.0  # 0 = use global_history_meta_ttl
    force_positioning: bool = False
    allow_positioning: bool = False
    force_recovery: bool = False
    allow_recovery: bool = False
    force_recovery_mode: str = ""  # "" | "stream" | "cache"
    allow_subscribe_for_client: bool = False
    allow_subscribe_for_anonymous: bool = False
    allow_publish_for_client: bool = False
    allow_publish_for_subscriber: bool = False
    allow_publish_for_anonymous: bool = False
    allow_presence_for_client: bool = False
    allow_presence_for_subscriber: bool = False
    allow_presence_for_anonymous: bool = False
    allow_history_for_client: bool = False
    allow_history_for_subscriber: bool = False
    allow_history_for_anonymous: bool = False
    allow_user_limited_channels: bool = False
    channel_regex: str = ""
    # Fossil delta compression (spec §2.2, §7): the delta types subscribers may ask for, and
    # whether every publication goes as a delta to them (the API's ``delta`` flag, per publish).
    allowed_delta_types: tuple[str, ...] = ()
    delta_publish: bool = False
    # Proxy hooks (proxy.md §1.1): channels of this scope ask the application backend before a
    # client subscribes or publishes, and when a subscription expires.
    proxy_subscribe: bool = False
    proxy_publish: bool = False
    proxy_sub_refresh: bool = False
    # The same in granular_proxy_mode (proxy.md §1.2): the name of a proxy in ``proxies``.
    subscribe_proxy_name: str = ""
    publish_proxy_name: str = ""
    sub_refresh_proxy_name: str = ""

    @property
    def history_enabled(self) -> bool:
        return self.history_size > 0 and self.history_ttl > 0


@dataclass(frozen=True, slots=True)
class ScopedKey:
    """A credential bound to an environment prefix (decisions §2): it only reaches channels whose
    name, after the namespace, starts with ``channel_prefix`` (``prod_`` covers ``prod_tenant_42``
    and ``critical:prod_tenant_42``)."""

    key: str
    channel_prefix: str


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """One named proxy of ``proxies`` (granular_proxy_mode, proxy.md §1.2)."""

    name: str
    endpoint: str
    timeout: float = 1.0
    http_headers: tuple[str, ...] = ()
    static_http_headers: tuple[tuple[str, str], ...] = ()
    binary_encoding: bool = False
    include_connection_meta: bool = False


@dataclass(frozen=True, slots=True)
class RpcNamespace:
    """``rpc_namespaces`` item: methods ``<name>:<method>`` go to proxy ``rpc_proxy_name``."""

    name: str
    rpc_proxy_name: str = ""


@dataclass(frozen=True, slots=True)
class Config:
    # --- server
    port: int = 8000
    address: str = "0.0.0.0"
    name: str = ""  # node name; "" = "<host name>_<port>"
    log_level: str = "info"  # debug | info | warning | error
    log_format: str = "text"  # text | json: one JSON object per line (docs/operations.md, Logs)
    websocket_handler_prefix: str = "/connection/websocket"
    # More transports (spec §1.1), each off by default; the emulation endpoint serves the
    # bidirectional ones (HTTP streaming, SSE) whenever one of them is on.
    http_stream: bool = False
    sse: bool = False
    uni_websocket: bool = False
    uni_sse: bool = False
    uni_http_stream: bool = False
    http_stream_handler_prefix: str = "/connection/http_stream"
    sse_handler_prefix: str = "/connection/sse"
    emulation_handler_prefix: str = "/emulation"
    uni_websocket_handler_prefix: str = "/connection/uni_websocket"
    uni_sse_handler_prefix: str = "/connection/uni_sse"
    uni_http_stream_handler_prefix: str = "/connection/uni_http_stream"
    # Largest body of an emulation command or a stream's connect request (HTTP 413 above).
    emulation_max_request_body_size: int = 65_536
    api_handler_prefix: str = "/api"
    shutdown_timeout: float = 30.0
    # Herald: close connections with 3001 spread over this window on shutdown (decisions §5).
    shutdown_drain_window: float = 5.0
    prometheus: bool = False  # expose GET /metrics in the Prometheus text format
    # Let a new node bind the same port while this one drains (zero-downtime restarts).
    reuse_port: bool = False
    # Herald: worker processes serving the port, each a node; 0 = "auto" (one per core).
    workers: int = 1
    # --- engine
    engine: str = "memory"  # "memory" | "redis"
    # One Redis server, or several: channels are spread over them (spec §9.2). A string or a list.
    redis_address: tuple[str, ...] = ("redis://127.0.0.1:6379",)
    redis_prefix: str = "herald"
    # Sentinel (spec §9.2): the sentinels' host:port and the name of the master they watch.
    redis_sentinel_address: tuple[str, ...] = ()
    redis_sentinel_master_name: str = ""
    redis_sentinel_user: str = ""
    redis_sentinel_password: str = ""
    # Redis Cluster (spec §9.2): each element one cluster, written as comma-separated host:port
    # seed nodes; several clusters share the channels out as several servers do.
    redis_cluster_address: tuple[str, ...] = ()
    # Credentials of the servers reached through Sentinel or Cluster seeds (a redis_address URL
    # carries its own), and the database of a Sentinel-managed master.
    redis_user: str = ""
    redis_password: str = ""
    redis_db: int = 0
    # --- tokens
    token_hmac_secret_key: str = ""
    token_rsa_public_key: str = ""
    token_ecdsa_public_key: str = ""
    token_audience: str = ""
    token_issuer: str = ""
    token_channels: str = "grant"  # "grant" (decisions §1) | "subscribe" (Centrifugo meaning)
    token_allow_without_exp: bool = False  # decisions §4
    token_cache_size: int = 100_000  # verified connection tokens kept until exp (decisions §5)
    allow_weak_secrets: bool = False  # decisions §4
    # Herald: tokens longer than this many characters are refused before decoding; 0 = no limit.
    token_max_size: int = 8192
    # More HMAC secrets, each bound to an environment prefix (decisions §2).
    token_hmac_secret_keys: tuple[ScopedKey, ...] = ()
    # --- server API
    api_key: str = ""
    api_insecure: bool = False
    api_error_mode: str = ""  # "" | "transport"
    # More API keys, each bound to an environment prefix (decisions §2).
    api_keys: tuple[ScopedKey, ...] = ()
    # --- admin web UI (Centrifugo v5 keys; docs/operations.md "Admin web UI"): off unless asked
    # for, and then only with a strong password and a long secret (see _check_admin).
    admin: bool = False
    admin_password: str = ""
    admin_secret: str = ""
    # --- client connections
    allowed_origins: tuple[str, ...] = ()
    client_insecure: bool = False
    allow_anonymous_connect_without_token: bool = False
    disallow_anonymous_connection_tokens: bool = False
    ping_interval: float = 25.0
    pong_timeout: float = 8.0
    client_channel_limit: int = 128
    client_user_connection_limit: int = 0
    client_connection_limit: int = 0  # per node; 0 = unlimited
    # Herald: admission rate limit for new connections per node (decisions §5); 0 = off.
    client_connection_rate_limit: float = 0.0
    client_connection_rate_burst: int = 0  # 0 = same as the rate
    client_queue_max_size: int = 1_048_576
    # Herald: commands per second one connection may send (token bucket, pongs not counted);
    # 0 = off. Over it a command gets error 111; a burst-sized run of refusals ends with 3013.
    client_command_rate_limit: float = 0.0
    client_command_rate_burst: int = 0  # 0 = same as the rate (at least 1)
    client_stale_close_delay: float = 10.0
    client_expired_close_delay: float = 25.0
    client_expired_sub_close_delay: float = 25.0
    client_presence_update_interval: float = 27.0
    client_channel_position_check_delay: float = 40.0
    client_history_max_publication_limit: int = 300
    client_recovery_max_publication_limit: int = 300
    client_connect_include_server_time: bool = False
    websocket_message_size_limit: int = 65_536
    # permessage-deflate (RFC 7692) when the client offers it; costs CPU (docs/transports.md).
    websocket_compression: bool = False
    websocket_compression_level: int = 1  # zlib level, 1 (fastest) to 9
    websocket_compression_min_size: int = 0  # messages shorter than this go uncompressed
    rpc_ping: bool = False
    rpc_ping_method: str = "ping"
    # Personal channels (spec §10.1): every connection of a user is subscribed server-side to
    # ``[namespace:]#<user>``; with single connection, a user's new connection closes the older ones.
    user_subscribe_to_personal: bool = False
    user_personal_channel_namespace: str = ""
    user_personal_single_connection: bool = False
    # --- proxy to the application backend (proxy.md §1.1; docs/configuration.md "Proxy")
    proxy_connect_endpoint: str = ""
    proxy_refresh_endpoint: str = ""
    proxy_subscribe_endpoint: str = ""
    proxy_publish_endpoint: str = ""
    proxy_sub_refresh_endpoint: str = ""
    proxy_rpc_endpoint: str = ""
    proxy_connect_timeout: float = 1.0
    proxy_refresh_timeout: float = 1.0
    proxy_subscribe_timeout: float = 1.0
    proxy_publish_timeout: float = 1.0
    proxy_sub_refresh_timeout: float = 1.0
    proxy_rpc_timeout: float = 1.0
    proxy_http_headers: tuple[str, ...] = ()  # names copied from the client's HTTP request
    proxy_static_http_headers: tuple[tuple[str, str], ...] = ()  # a JSON object in the config
    proxy_include_connection_meta: bool = False
    proxy_binary_encoding: bool = False
    # Herald: proxy calls in flight per node; a connect that finds them all busy is closed with
    # 3013 at once (the SDK reconnects with backoff), other calls wait within their timeout.
    proxy_max_concurrency: int = 64
    # Granular mode (proxy.md §1.2): named proxies, chosen per event by name.
    granular_proxy_mode: bool = False
    proxies: tuple[ProxySettings, ...] = ()
    connect_proxy_name: str = ""
    refresh_proxy_name: str = ""
    rpc_proxy_name: str = ""  # RPC methods without a namespace
    rpc_namespaces: tuple[RpcNamespace, ...] = ()
    rpc_namespace_boundary: str = ":"
    # --- channels
    channel_max_length: int = 255
    channel_private_prefix: str = "$"
    channel_namespace_boundary: str = ":"
    channel_user_boundary: str = "#"
    channel_user_separator: str = ","
    global_history_meta_ttl: float = 720 * 3600.0
    global_presence_ttl: float = 60.0
    # Top-level channel options (channels without a namespace) and the namespaces.
    channel_options: ChannelOptions = field(default_factory=ChannelOptions)
    namespaces: dict[str, ChannelOptions] = field(default_factory=dict)

    def namespace_name(self, channel: str) -> str:
        """Namespace of a channel: the part before the first boundary, ``$`` stripped (spec §7)."""
        if self.channel_private_prefix and channel.startswith(self.channel_private_prefix):
            channel = channel[len(self.channel_private_prefix) :]
        name, sep, _ = channel.partition(self.channel_namespace_boundary)
        return name if sep else ""

    def channel_options_for(self, channel: str) -> ChannelOptions | None:
        """Options for a channel; None when its namespace is not configured (error 102)."""
        name = self.namespace_name(channel)
        if not name:
            return self.channel_options
        return self.namespaces.get(name)

    def in_scope(self, channel: str, prefix: str) -> bool:
        """Whether a channel lies inside an environment prefix (decisions §2)."""
        if self.channel_private_prefix and channel.startswith(self.channel_private_prefix):
            channel = channel[len(self.channel_private_prefix) :]
        _, sep, name = channel.partition(self.channel_namespace_boundary)
        return (name if sep else channel).startswith(prefix)

    def history_meta_ttl(self, opts: ChannelOptions) -> float:
        return opts.history_meta_ttl or self.global_history_meta_ttl


ENV_PREFIX: Final = "HERALD_"


MIN_HMAC_SECRET_BYTES: Final = 32  # decisions §4


MIN_API_KEY_BYTES: Final = 32  # shorter API keys draw a warning, as short secrets draw a refusal


DELTA_TYPES: Final = ("fossil",)


PROXY_KINDS: Final = ("connect", "refresh", "subscribe", "publish", "sub_refresh", "rpc")
PORT_RANGE: Final = (1, 65535)
