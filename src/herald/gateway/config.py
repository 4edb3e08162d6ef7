"""Typed, frozen gateway settings and namespace resolution (spec §7, §10.1; decisions §7).

Keys are Centrifugo v5 flat keys so an existing Centrifugo config block works as is.
Durations are held as float seconds.
"""

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

    @property
    def history_enabled(self) -> bool:
        return self.history_size > 0 and self.history_ttl > 0


@dataclass(frozen=True, slots=True)
class Config:
    # --- server
    port: int = 8000
    address: str = "0.0.0.0"
    name: str = ""  # node name; "" = host name
    log_level: str = "info"  # debug | info | warning | error
    websocket_handler_prefix: str = "/connection/websocket"
    api_handler_prefix: str = "/api"
    shutdown_timeout: float = 30.0
    # Herald: close connections with 3001 spread over this window on shutdown (decisions §5).
    shutdown_drain_window: float = 5.0
    # --- engine
    engine: str = "memory"  # "memory" | "redis"
    redis_address: str = "redis://127.0.0.1:6379"
    redis_prefix: str = "herald"
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
    # --- server API
    api_key: str = ""
    api_insecure: bool = False
    api_error_mode: str = ""  # "" | "transport"
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
    client_stale_close_delay: float = 10.0
    client_expired_close_delay: float = 25.0
    client_expired_sub_close_delay: float = 25.0
    client_presence_update_interval: float = 27.0
    client_channel_position_check_delay: float = 40.0
    client_history_max_publication_limit: int = 300
    client_recovery_max_publication_limit: int = 300
    client_connect_include_server_time: bool = False
    websocket_message_size_limit: int = 65_536
    rpc_ping: bool = False
    rpc_ping_method: str = "ping"
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

    def history_meta_ttl(self, opts: ChannelOptions) -> float:
        return opts.history_meta_ttl or self.global_history_meta_ttl
