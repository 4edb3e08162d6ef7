"""Typed, frozen gateway settings, namespace resolution and config parsing (spec §7, §10.1; decisions §7).

Keys are Centrifugo v5 flat keys so an existing Centrifugo config block works as is.
Durations are held as float seconds.

Parsing is table-driven: the kind of every key (bool, int, str, number, duration, list of
strings) comes from the dataclass annotations below plus the explicit ``_DURATIONS`` set, so a
new field is validated as soon as it is declared. Every problem is collected, one line each
naming the key (and the namespace), and reported together; nothing unknown is ignored silently.
"""

from __future__ import annotations

import difflib
import importlib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from herald.gateway import config_v6
from herald.gateway.admin.checks import check_admin
from herald.tokens import load_public_key

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


# ---------------------------------------------------------------------------- parsing


class ConfigError(Exception):
    """The config cannot be used; ``problems`` has one line per problem, each naming its key."""

    def __init__(self, problems: Sequence[str], warnings: Sequence[str] = ()) -> None:
        self.problems: list[str] = list(problems)
        # Kept so that ``herald check`` can print the warnings next to the problems.
        self.warnings: list[str] = list(warnings)
        super().__init__("\n".join(self.problems))


class _Invalid(Exception):
    """One bad value; the message completes the line ``<key><where>: <message>``."""


ENV_PREFIX: Final = "HERALD_"
MIN_HMAC_SECRET_BYTES: Final = 32  # decisions §4
MIN_API_KEY_BYTES: Final = 32  # shorter API keys draw a warning, as short secrets draw a refusal

# Float fields that are durations (written as Go duration strings); other floats are plain numbers.
_DURATIONS: Final = frozenset(
    {
        "shutdown_timeout",
        "shutdown_drain_window",
        "ping_interval",
        "pong_timeout",
        "client_stale_close_delay",
        "client_expired_close_delay",
        "client_expired_sub_close_delay",
        "client_presence_update_interval",
        "client_channel_position_check_delay",
        "global_history_meta_ttl",
        "global_presence_ttl",
        "history_ttl",
        "history_meta_ttl",
        *(f"proxy_{kind}_timeout" for kind in ("connect", "refresh", "subscribe", "publish", "sub_refresh", "rpc")),
    }
)
_CHOICES: Final[dict[str, tuple[str, ...]]] = {
    "engine": ("memory", "redis"),
    "token_channels": ("grant", "subscribe"),
    "api_error_mode": ("", "transport"),
    "force_recovery_mode": ("", "stream", "cache"),
    "log_level": ("debug", "info", "warning", "error"),
    "log_format": ("text", "json"),
}
# Numbers must be >= 0, except these, where 0 would make the gateway unusable.
_POSITIVE: Final = frozenset(
    {
        "ping_interval",
        "client_queue_max_size",
        "websocket_message_size_limit",
        "channel_max_length",
        "emulation_max_request_body_size",
        "proxy_max_concurrency",
        *(f"proxy_{kind}_timeout" for kind in ("connect", "refresh", "subscribe", "publish", "sub_refresh", "rpc")),
    }
)
DELTA_TYPES: Final = ("fossil",)
_PORT_RANGE: Final = (1, 65535)
# Lists that also take a single string, as Centrifugo does (a string is a list of one).
_ONE_OR_MANY: Final = frozenset({"redis_address", "redis_sentinel_address", "redis_cluster_address"})
# A list whose items contain commas: from the environment, a plain string is one item.
_COMMA_ITEMS: Final = frozenset({"redis_cluster_address"})
_REDIS_SCHEMES: Final = ("redis", "rediss", "unix")

# Centrifugo v5 keys Herald knows but does not implement (proxies, delta, other transports...):
# named as such rather than as typos, and still refused so nothing is silently ignored.
_UNSUPPORTED: Final = frozenset(
    {
        "proxy_subscribe_stream",
        "proxy_subscribe_stream_endpoint",
        "proxy_subscribe_stream_timeout",
        "proxy_subscribe_stream_bidirectional",
        "proxy_http_status_code_transforms",
        "proxy_grpc_metadata",
        "subscribe_stream_proxy_name",
        "proxy_cache_empty",
        "cache_empty_proxy_name",
        "internal_port",
        "internal_address",
        "broker",
        "nats_url",
        "nats_prefix",
        "redis_use_lists",
        "token_jwks_public_endpoint",
        "token_user_id_claim",
        "websocket_write_timeout",
        # The admin UI is always password-protected and served at /admin on the main port.
        "admin_insecure",
        "admin_handler_prefix",
        "admin_web_path",
        "admin_external",
    }
)

_KIND_OF_ANNOTATION: Final = {
    "bool": "bool",
    "int": "int",
    "str": "str",
    "float": "number",
    "tuple[str, ...]": "strlist",
    "tuple[ScopedKey, ...]": "scopedkeys",
    "tuple[tuple[str, str], ...]": "strmap",
    "tuple[ProxySettings, ...]": "proxies",
    "tuple[RpcNamespace, ...]": "rpcnamespaces",
}
_NESTED: Final = ("channel_options", "namespaces")  # parsed specially, not as flat keys


# Keys whose values are not one plain kind: "workers" is a positive integer or "auto".
_SPECIAL_KINDS: Final = {"workers": "workers"}


def _kinds(cls: type) -> dict[str, str]:
    # A KeyError here at import means a field with a new type was added: teach the parser about it.
    kinds = {}
    for f in fields(cls):
        if f.name in _SPECIAL_KINDS:
            kinds[f.name] = _SPECIAL_KINDS[f.name]
        elif f.name not in _NESTED:
            kind = _KIND_OF_ANNOTATION[str(f.type)]
            kinds[f.name] = "duration" if f.name in _DURATIONS else kind
    return kinds


_SERVER_KINDS: Final = _kinds(Config)
_CHANNEL_KINDS: Final = _kinds(ChannelOptions)
_TOP_LEVEL_KEYS: Final = sorted([*_SERVER_KINDS, *_CHANNEL_KINDS, "namespaces"])
_NAMESPACE_KEYS: Final = sorted([*_CHANNEL_KINDS, "name"])

# Go time.ParseDuration syntax: a sign, then one or more <decimal><unit> parts.
_DURATION_UNITS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 micro sign
    "μs": 1e-6,  # U+03BC greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART: Final = r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)"
_DURATION_RE: Final = re.compile(rf"([-+]?)((?:{_DURATION_PART})+)")
_DURATION_PART_RE: Final = re.compile(_DURATION_PART)
_DURATION_HINT: Final = 'must be a duration string such as "120s", "1m30s" or "500ms"'

_ENV_BOOLS: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_config(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> tuple[Config, list[str]]:
    """Validate Centrifugo v5 flat keys (or a v6 file) and ``HERALD_<KEY>`` overrides; return (config, warnings).

    ``environ`` defaults to ``os.environ``. Raises ConfigError listing every problem found.
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    warnings: list[str] = []
    # A Centrifugo v6 file (spec §10.2) is flattened first; the rest is the same for both formats.
    v6 = config_v6.is_v6(data)
    v6_problems: list[str] = []
    if v6:
        data, v6_problems = config_v6.flatten(data, _CHANNEL_KINDS)
    merged = dict(data)
    origin: dict[str, str] = {}  # key -> the environment variable that set it
    bad = _apply_env(env, merged, origin, problems, warnings)

    def label(key: str) -> str:
        return f"{key} (from {origin[key]})" if key in origin else key

    server: dict[str, Any] = {}
    channel: dict[str, Any] = {}
    for key, value in merged.items():
        key = str(key)
        if key == "namespaces":
            continue
        kind = _SERVER_KINDS.get(key) or _CHANNEL_KINDS.get(key)
        if kind is None:
            problems.append(_unknown_key(label(key), key, _TOP_LEVEL_KEYS))
            continue
        try:
            converted = _convert(key, kind, value)
        except _Invalid as exc:
            problems.append(f"{label(key)}: {exc}")
            bad.add(key)
            continue
        (server if key in _SERVER_KINDS else channel)[key] = converted

    config = Config(**server)
    global_meta_bad = "global_history_meta_ttl" in bad
    top = _channel_options(channel, bad, label, config.global_history_meta_ttl, global_meta_bad, problems)
    namespaces: dict[str, ChannelOptions] = {}
    if "namespaces" in merged and "namespaces" not in bad:
        suffix = f" (from {origin['namespaces']})" if "namespaces" in origin else ""
        namespaces = _namespaces(
            merged["namespaces"], suffix, config.global_history_meta_ttl, global_meta_bad, problems
        )
    config = replace(config, channel_options=top, namespaces=namespaces)
    _check_server(config, bad, label, problems, warnings)
    if v6:  # name keys as the file spells them
        problems = [*v6_problems, *config_v6.relabel(problems, _CHANNEL_KINDS)]
        warnings = config_v6.relabel(warnings, _CHANNEL_KINDS)
    if problems:
        raise ConfigError(problems, warnings)
    return config, warnings


def load_config(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None
) -> tuple[Config, list[str]]:
    """Read a JSON file (``.toml``, or ``.yaml``/``.yml`` with PyYAML) and parse it; None = defaults + env."""
    return parse_config({} if path is None else read_config_file(path), environ)


def read_config_file(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The decoded top-level object of a config file; ConfigError when it cannot be read."""
    name = os.fspath(path)
    try:
        raw = Path(name).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read config file: {exc.strerror or exc}"]) from None
    data = _decode(name, raw)
    if data is None:  # an empty YAML document
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([f"{name}: the top level must be an object of keys, got {type(data).__name__}"])
    return data


def _decode(name: str, raw: bytes) -> Any:
    suffix = Path(name).suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(raw.decode())
        if suffix in (".yaml", ".yml"):
            try:
                yaml: Any = importlib.import_module("yaml")
            except ImportError:
                raise ConfigError([f"{name}: reading YAML needs PyYAML (pip install pyyaml); or use JSON"]) from None
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ConfigError([f"{name}: invalid YAML: {exc}".replace("\n", " ")]) from None
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{name}: invalid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{name}: not UTF-8 text"]) from None


def _apply_env(
    environ: Mapping[str, str],
    merged: dict[str, Any],
    origin: dict[str, str],
    problems: list[str],
    warnings: list[str],
) -> set[str]:
    """Overlay ``HERALD_<KEY>`` variables on the file data; return the keys whose variable was bad."""
    bad: set[str] = set()
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX):
            continue
        key = var[len(ENV_PREFIX) :].lower()
        kind = "namespaces" if key == "namespaces" else _SERVER_KINDS.get(key) or _CHANNEL_KINDS.get(key)
        if kind is None:
            # Only a warning: the environment legitimately holds other HERALD_* variables.
            warnings.append(f"{var}: environment variable matches no configuration key; ignored")
            continue
        origin[key] = var
        try:
            merged[key] = _from_env(kind, environ[var], key)
        except _Invalid as exc:
            problems.append(f"{key} (from {var}): {exc}")
            merged.pop(key, None)
            bad.add(key)
    return bad


def _from_env(kind: str, text: str, key: str = "") -> Any:
    """Turn an environment string into the value a JSON file would hold for this kind of key."""
    if kind == "bool":
        try:
            return _ENV_BOOLS[text.strip().lower()]
        except KeyError:
            raise _Invalid(f"must be one of true, false, 1, 0, yes, no, got {_show(text)}") from None
    if kind == "workers" and text.strip() == "auto":
        return "auto"
    if kind in ("int", "number", "workers"):
        try:
            return float(text) if kind == "number" else int(text)
        except ValueError:
            raise _Invalid(f"must be {'an integer' if kind == 'int' else 'a number'}, got {_show(text)}") from None
    if kind in ("namespaces", "scopedkeys", "strmap", "proxies", "rpcnamespaces") or (
        kind == "strlist" and text.lstrip().startswith("[")
    ):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Invalid(f"invalid JSON ({exc})") from None
    if kind == "strlist" and key in _COMMA_ITEMS:
        return [text.strip()]  # one item: its commas are its own (use JSON for several)
    if kind == "strlist":
        return [item.strip() for item in text.split(",") if item.strip()]
    return text  # str and duration: the string itself


def _convert(key: str, kind: str, value: Any) -> Any:
    """Check one value against its kind and limits; return it as the dataclass field holds it."""
    shown = _show(value)
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool" and not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {shown}")
    if kind == "int" and (not is_number or not isinstance(value, int)):
        raise _Invalid(f"must be an integer, got {shown}")
    if kind == "number":
        if not is_number or not math.isfinite(value):
            raise _Invalid(f"must be a number, got {shown}")
        value = float(value)
    if kind == "str" and not isinstance(value, str):
        raise _Invalid(f"must be a string, got {shown}")
    if kind == "strlist":
        if key in _ONE_OR_MANY and isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise _Invalid(f"must be a list of strings, got {shown}")
        value = tuple(value)
    if kind == "duration":
        value = _parse_duration(value, shown)
    if kind == "workers":
        if value == "auto":
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _Invalid(f'must be a whole number of processes (1 or more) or "auto", got {shown}')
    if kind == "scopedkeys":
        value = _scoped_keys(value, shown)
    if kind == "proxies":
        value = _named_proxies(value, shown)
    if kind == "rpcnamespaces":
        value = _rpc_namespaces(value, shown)
    if kind == "strmap":
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise _Invalid(f'must be an object of strings such as {{"X-Api-Key": "..."}}, got {shown}')
        value = tuple((str(k), v) for k, v in value.items())
    if key in _CHOICES and value not in _CHOICES[key]:
        raise _Invalid(f"must be one of {', '.join(json.dumps(c) for c in _CHOICES[key])}, got {shown}")
    if kind in ("int", "number", "duration"):
        if key == "port" and not _PORT_RANGE[0] <= value <= _PORT_RANGE[1]:
            raise _Invalid(f"must be between {_PORT_RANGE[0]} and {_PORT_RANGE[1]}, got {shown}")
        if key in _POSITIVE and value <= 0:
            raise _Invalid(f"must be greater than 0, got {shown}")
        if value < 0:
            raise _Invalid(f"must not be negative, got {shown}")
    return value


_PROXY_KINDS: Final = {
    "name": "str",
    "endpoint": "str",
    "timeout": "duration",
    "http_headers": "strlist",
    "static_http_headers": "strmap",
    "binary_encoding": "bool",
    "include_connection_meta": "bool",
}


def _named_proxies(value: Any, shown: str) -> tuple[ProxySettings, ...]:
    """``proxies``: ``[{"name", "endpoint", "timeout", "http_headers", ...}]`` (proxy.md §1.2)."""
    shape = 'must be a list of {"name": "...", "endpoint": "http://..."} objects'
    if not isinstance(value, list | tuple):
        raise _Invalid(f"{shape}, got {shown}")
    result = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise _Invalid(f"{shape}; item {i} is {_show(item)}")
        values: dict[str, Any] = {}
        for key, raw in item.items():
            kind = _PROXY_KINDS.get(str(key))
            if kind is None:
                raise _Invalid(f"item {i}: unknown key {_show(key)} (known: {', '.join(_PROXY_KINDS)})")
            try:
                values[str(key)] = _convert(str(key), kind, raw)
            except _Invalid as exc:
                raise _Invalid(f"item {i}: {key}: {exc}") from None
        for required in ("name", "endpoint"):
            if not values.get(required):
                raise _Invalid(f"item {i}: {required} is required")
        if values.get("timeout") == 0:
            raise _Invalid(f"item {i}: timeout: must be greater than 0")
        result.append(ProxySettings(**values))
    return tuple(result)


def _rpc_namespaces(value: Any, shown: str) -> tuple[RpcNamespace, ...]:
    """``rpc_namespaces``: ``[{"name": "ns1", "rpc_proxy_name": "rpc1"}]`` (proxy.md §1.2)."""
    shape = 'must be a list of {"name": "...", "rpc_proxy_name": "..."} objects'
    if not isinstance(value, list | tuple):
        raise _Invalid(f"{shape}, got {shown}")
    result = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping) or not set(item) <= {"name", "rpc_proxy_name"}:
            raise _Invalid(f"{shape}; item {i} is {_show(item)}")
        if not all(isinstance(v, str) for v in item.values()) or not item.get("name"):
            raise _Invalid(f"item {i}: name (required) and rpc_proxy_name must be strings")
        result.append(RpcNamespace(item["name"], item.get("rpc_proxy_name", "")))
    return tuple(result)


def _scoped_keys(value: Any, shown: str) -> tuple[ScopedKey, ...]:
    """``[{"key": "...", "channel_prefix": "prod_"}, ...]``: both strings, both non-empty."""
    shape = 'must be a list of {"key": "...", "channel_prefix": "..."} objects'
    if not isinstance(value, list | tuple):
        raise _Invalid(f"{shape}, got {shown}")
    keys = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"key", "channel_prefix"}:
            raise _Invalid(f"{shape}; item {i} is {_show(item)}")
        if not all(isinstance(item[k], str) and item[k] for k in ("key", "channel_prefix")):
            raise _Invalid(f"item {i}: key and channel_prefix must be non-empty strings")
        keys.append(ScopedKey(item["key"], item["channel_prefix"]))
    return tuple(keys)


def _parse_duration(value: Any, shown: str) -> float:
    """Go ``time.ParseDuration`` syntax to seconds. Numbers are refused: Centrifugo would read
    them as nanoseconds, which is never what a config author means."""
    if not isinstance(value, str):
        why = " (Herald does not read bare numbers as nanoseconds)" if isinstance(value, int | float) else ""
        raise _Invalid(f"{_DURATION_HINT}, got {shown}{why}")
    if value in ("0", "+0", "-0"):  # Go accepts a unitless zero
        return 0.0
    match = _DURATION_RE.fullmatch(value)
    if match is None:
        raise _Invalid(f"{_DURATION_HINT} (units h, m, s, ms, us, ns), got {shown}")
    seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART_RE.findall(value))
    return -seconds if match.group(1) == "-" else seconds


def _channel_options(
    values: Mapping[str, Any],
    bad: set[str],
    label: Callable[[str], str],
    global_meta_ttl: float,
    global_meta_bad: bool,
    problems: list[str],
) -> ChannelOptions:
    """Build one scope's options and check the rules that tie its keys together (spec §7)."""
    opts = ChannelOptions(**values)

    def ok(*keys: str) -> bool:  # cross-checks on a key that is already reported would only add noise
        return bad.isdisjoint(keys)

    history_keys = ("history_size", "history_ttl")
    if ok(*history_keys) and (opts.history_size > 0) != (opts.history_ttl > 0):
        missing, present = ("history_ttl", "history_size") if opts.history_ttl == 0 else history_keys
        problems.append(f"{label(missing)}: must be set when {present} is set (history needs both)")
    for key in ("force_recovery", "allow_recovery"):
        if ok(key, *history_keys) and getattr(opts, key) and not opts.history_enabled:
            problems.append(f"{label(key)}: needs history (set history_size and history_ttl)")
    recovery = opts.force_recovery or opts.allow_recovery
    if ok("force_recovery_mode", "force_recovery", "allow_recovery") and opts.force_recovery_mode and not recovery:
        problems.append(f"{label('force_recovery_mode')}: needs force_recovery or allow_recovery")
    meta_key = "history_meta_ttl" if opts.history_meta_ttl else "global_history_meta_ttl"
    meta_ttl = opts.history_meta_ttl or global_meta_ttl
    meta_ok = ok("history_meta_ttl") and (meta_key == "history_meta_ttl" or not global_meta_bad)
    if ok("history_ttl") and meta_ok and opts.history_ttl > meta_ttl:
        problems.append(
            f"{label('history_ttl')}: must not be longer than {meta_key} ({_format_seconds(meta_ttl)}), "
            f"got {_format_seconds(opts.history_ttl)}"
        )
    for delta_type in opts.allowed_delta_types:
        if ok("allowed_delta_types") and delta_type not in DELTA_TYPES:
            problems.append(f'{label("allowed_delta_types")}: unknown delta type {_show(delta_type)}; only "fossil"')
    if ok("delta_publish", "allowed_delta_types") and opts.delta_publish and not opts.allowed_delta_types:
        problems.append(f'{label("delta_publish")}: needs allowed_delta_types, e.g. ["fossil"]')
    if opts.channel_regex:
        try:
            re.compile(opts.channel_regex)
        except re.error as exc:
            problems.append(f"{label('channel_regex')}: invalid regular expression ({exc})")
    return opts


def _namespaces(
    value: Any, suffix: str, global_meta_ttl: float, global_meta_bad: bool, problems: list[str]
) -> dict[str, ChannelOptions]:
    """``namespaces``: a list of objects with ``name`` and channel options, kept in order."""
    if not isinstance(value, list):
        problems.append(
            f'namespaces{suffix}: must be a list of objects such as [{{"name": "chat"}}], got {_show(value)}'
        )
        return {}
    result: dict[str, ChannelOptions] = {}
    first_index: dict[str, int] = {}
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            problems.append(f"namespaces[{index}]{suffix}: must be an object with a name, got {_show(item)}")
            continue
        name = item.get("name")
        # json.dumps quotes the name and escapes control characters, so each problem stays one line.
        where = f" in namespace {_quote(name)}" if isinstance(name, str) and name else f" in namespaces[{index}]"
        where += suffix
        name_ok = False
        if "name" not in item:
            problems.append(f"name{where}: required")
        elif not isinstance(name, str):
            problems.append(f"name{where}: must be a string, got {_show(name)}")
        elif not NAMESPACE_NAME_RE.fullmatch(name):
            problems.append(
                f"name{where}: must be 2 or more letters, digits, '-', '_' or '.' "
                f"({NAMESPACE_NAME_RE.pattern}), got {_show(name)}"
            )
        elif name in first_index:
            problems.append(f"name{where}: namespaces[{index}] repeats the name of namespaces[{first_index[name]}]")
        else:
            name_ok = True
            first_index[name] = index
        values: dict[str, Any] = {}
        bad: set[str] = set()
        for key, raw in item.items():
            key = str(key)
            if key == "name":
                continue
            kind = _CHANNEL_KINDS.get(key)
            if kind is None:
                problems.append(_unknown_key(f"{key}{where}", key, _NAMESPACE_KEYS))
                continue
            try:
                values[key] = _convert(key, kind, raw)
            except _Invalid as exc:
                problems.append(f"{key}{where}: {exc}")
                bad.add(key)
        opts = _channel_options(values, bad, _suffixed(where), global_meta_ttl, global_meta_bad, problems)
        if name_ok:
            assert isinstance(name, str)
            result[name] = opts
    return result


def _check_server(
    config: Config, bad: set[str], label: Callable[[str], str], problems: list[str], warnings: list[str]
) -> None:
    """Rules across server keys; warnings for configs that start but cannot serve anyone."""
    if "websocket_compression_level" not in bad and not 1 <= config.websocket_compression_level <= 9:
        problems.append(
            f"{label('websocket_compression_level')}: must be between 1 and 9, got {config.websocket_compression_level}"
        )
    if bad.isdisjoint({"ping_interval", "pong_timeout"}) and 0 < config.ping_interval <= config.pong_timeout:
        problems.append(
            f"{label('pong_timeout')}: must be less than ping_interval "
            f"({_format_seconds(config.ping_interval)}), got {_format_seconds(config.pong_timeout)}; "
            "0 disables pong checking"
        )
    secret = config.token_hmac_secret_key
    size = len(secret.encode())
    if secret and size < MIN_HMAC_SECRET_BYTES and "allow_weak_secrets" not in bad:
        if config.allow_weak_secrets:
            warnings.append(
                f"{label('token_hmac_secret_key')}: only {size} bytes, accepted because allow_weak_secrets "
                "is true; never use such a secret in production"
            )
        else:
            problems.append(
                f"{label('token_hmac_secret_key')}: must be at least {MIN_HMAC_SECRET_BYTES} bytes, "
                f"got {size}; set allow_weak_secrets: true only for local development"
            )
    for i, scoped in enumerate(config.token_hmac_secret_keys):
        size = len(scoped.key.encode())
        if size < MIN_HMAC_SECRET_BYTES and not config.allow_weak_secrets:
            problems.append(
                f"{label('token_hmac_secret_keys')}: item {i} must be at least {MIN_HMAC_SECRET_BYTES} bytes, "
                f"got {size}"
            )
    for key, kind in (("token_rsa_public_key", "rsa"), ("token_ecdsa_public_key", "ec")):
        pem: str = getattr(config, key)
        if pem:
            try:
                load_public_key(pem, kind)
            except ValueError as exc:
                problems.append(f"{label(key)}: {exc}")
    if (
        bad.isdisjoint({"shutdown_timeout", "shutdown_drain_window"})
        and config.shutdown_timeout > 0
        and config.shutdown_drain_window >= config.shutdown_timeout
    ):
        warnings.append(
            f"{label('shutdown_drain_window')}: {_format_seconds(config.shutdown_drain_window)} does not fit inside "
            f"shutdown_timeout ({_format_seconds(config.shutdown_timeout)}); connections still open when the "
            "timeout ends are closed at once"
        )
    _check_proxy(config, bad, label, problems, warnings)
    _check_personal(config, bad, label, problems)
    check_admin(config, bad, label, problems, warnings)  # admin/checks.py
    prefixes = [key for key in _HANDLER_PREFIXES if key not in bad]
    seen: dict[str, str] = {}
    for key in prefixes:
        path = getattr(config, key).rstrip("/")
        if not path.startswith("/"):
            problems.append(f"{label(key)}: must start with '/', got {_show(getattr(config, key))}")
        elif path in seen:
            problems.append(f"{label(key)}: the same path as {seen[path]} ({_show(path)})")
        else:
            seen[path] = key
    if "workers" not in bad and "engine" not in bad and (problem := workers_problem(config)):
        problems.append(f"{label('workers')}: {problem}")
    _check_redis(config, bad, label, problems, warnings)
    if not config.api_key and not config.api_keys and not config.api_insecure:
        warnings.append(
            f"{label('api_key')}: empty and api_insecure is false, so every server API request will be refused with 401"
        )
    api_keys = [("api_key", "", config.api_key)]
    api_keys += [("api_keys", f"item {i} ", scoped.key) for i, scoped in enumerate(config.api_keys)]
    for key, item, api_key in api_keys:
        size = len(api_key.encode())
        if api_key and size < MIN_API_KEY_BYTES:
            # Only a warning (a short HMAC secret is refused, decisions §4), so that an existing
            # Centrifugo config with such a key still starts; but a short key can be guessed.
            warnings.append(
                f"{label(key)}: {item}only {size} bytes; use a random key of at least {MIN_API_KEY_BYTES} bytes "
                "(herald genconfig makes one)"
            )
    if no_client_can_connect(config):
        warnings.append(
            "token_hmac_secret_key: no token key is set (token_hmac_secret_key, token_rsa_public_key, "
            "token_ecdsa_public_key) and neither client_insecure nor allow_anonymous_connect_without_token "
            "is true, so no client can connect"
        )


def no_client_can_connect(config: Config) -> bool:
    """No token key to verify connections with, no connect proxy, and no anonymous access either."""
    has_key = (
        config.token_hmac_secret_key
        or config.token_hmac_secret_keys
        or config.token_rsa_public_key
        or config.token_ecdsa_public_key
    )
    return not has_key and not (
        config.client_insecure
        or config.allow_anonymous_connect_without_token
        or config.proxy_connect_endpoint  # a connect proxy authenticates instead of tokens
        or config.connect_proxy_name
    )


_HANDLER_PREFIXES: Final = (
    "websocket_handler_prefix",
    "http_stream_handler_prefix",
    "sse_handler_prefix",
    "emulation_handler_prefix",
    "uni_websocket_handler_prefix",
    "uni_sse_handler_prefix",
    "uni_http_stream_handler_prefix",
)


PROXY_KINDS: Final = ("connect", "refresh", "subscribe", "publish", "sub_refresh", "rpc")
_HEADER_NAME_RE: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110 §5.1)


def _url_problem(url: str) -> str | None:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        why = " (GRPC proxies are not supported)" if scheme.lower() == "grpc" else ""
        return f"must be an http:// or https:// URL{why}, got {_show(url)}"
    if not rest or rest.startswith(("/", "?", "#")):
        return f"the URL has no host, got {_show(url)}"
    if any(c.isspace() for c in url):
        return f"the URL must not contain spaces, got {_show(url)}"
    return None


def _headers_problems(key: str, names: Sequence[str], static: Sequence[tuple[str, str]]) -> list[str]:
    problems = [
        f"{key}: {_show(name)} is not a valid HTTP header name" for name in names if not _HEADER_NAME_RE.fullmatch(name)
    ]
    for name, value in static:
        if not _HEADER_NAME_RE.fullmatch(name):
            problems.append(f"{key}: {_show(name)} is not a valid HTTP header name")
        if "\r" in value or "\n" in value:
            problems.append(f"{key}: the value of {_show(name)} must be one line")
    return problems


def _check_proxy(
    config: Config, bad: set[str], label: Callable[[str], str], problems: list[str], warnings: list[str]
) -> None:
    """Proxy endpoints are http(s) URLs (GRPC proxies are not supported), header names are HTTP
    tokens, and every event a config proxies has somewhere to go (proxy.md §1.1, §1.2)."""
    for kind in PROXY_KINDS:
        key = f"proxy_{kind}_endpoint"
        url = getattr(config, key)
        if url and key not in bad and (problem := _url_problem(url)):
            problems.append(f"{label(key)}: {problem}")
    if "proxy_http_headers" not in bad:
        problems.extend(_headers_problems(label("proxy_http_headers"), config.proxy_http_headers, ()))
    if "proxy_static_http_headers" not in bad:
        problems.extend(_headers_problems(label("proxy_static_http_headers"), (), config.proxy_static_http_headers))
    scopes = [("", config.channel_options), *((f" in namespace {_quote(n)}", o) for n, o in config.namespaces.items())]
    if config.granular_proxy_mode:
        _check_granular(config, bad, label, scopes, problems)
        return
    for key in ("proxies", "connect_proxy_name", "refresh_proxy_name", "rpc_proxy_name", "rpc_namespaces"):
        if getattr(config, key):
            problems.append(f"{label(key)}: needs granular_proxy_mode: true")
    for where, opts in scopes:
        for kind in ("subscribe", "publish", "sub_refresh"):
            if getattr(opts, f"{kind}_proxy_name"):
                problems.append(f"{kind}_proxy_name{where}: needs granular_proxy_mode: true")
            if getattr(opts, f"proxy_{kind}") and not getattr(config, f"proxy_{kind}_endpoint"):
                warnings.append(
                    f"proxy_{kind}{where}: true but proxy_{kind}_endpoint is empty, so clients get error 108 "
                    "(not available)"
                )


def _check_granular(
    config: Config,
    bad: set[str],
    label: Callable[[str], str],
    scopes: list[tuple[str, ChannelOptions]],
    problems: list[str],
) -> None:
    """granular_proxy_mode (proxy.md §1.2): named proxies, referred to by name; the flat
    endpoint keys and per-namespace switches of the default mode would be ignored, so they are refused."""
    names: set[str] = set()
    for i, proxy in enumerate(config.proxies):
        where = f"{label('proxies')}: item {i} ({_show(proxy.name)})"
        if not NAMESPACE_NAME_RE.fullmatch(proxy.name):
            problems.append(f"{where}: name must be 2 or more letters, digits, '-', '_' or '.'")
        elif proxy.name in names:
            problems.append(f"{where}: the name is used by another proxy")
        names.add(proxy.name)
        if problem := _url_problem(proxy.endpoint):
            problems.append(f"{where}: endpoint {problem}")
        for problem in _headers_problems("headers", proxy.http_headers, proxy.static_http_headers):
            problems.append(f"{where}: {problem}")
    for kind in PROXY_KINDS:
        key = f"proxy_{kind}_endpoint"
        if getattr(config, key):
            problems.append(
                f"{label(key)}: not used in granular_proxy_mode; define the proxy in proxies and name it "
                f"with {'rpc_proxy_name' if kind == 'rpc' else kind + '_proxy_name'}"
            )

    def check_name(key: str, name: str) -> None:
        if name and "proxies" not in bad and name not in names:
            problems.append(f"{key}: no proxy named {_show(name)} in proxies")

    for key in ("connect_proxy_name", "refresh_proxy_name", "rpc_proxy_name"):
        check_name(label(key), getattr(config, key))
    for where, opts in scopes:
        for kind in ("subscribe", "publish", "sub_refresh"):
            check_name(f"{kind}_proxy_name{where}", getattr(opts, f"{kind}_proxy_name"))
            if getattr(opts, f"proxy_{kind}"):
                problems.append(f"proxy_{kind}{where}: not used in granular_proxy_mode; set {kind}_proxy_name")
    seen: set[str] = set()
    for i, ns in enumerate(config.rpc_namespaces):
        where = f"{label('rpc_namespaces')}: item {i} ({_show(ns.name)})"
        if not NAMESPACE_NAME_RE.fullmatch(ns.name):
            problems.append(f"{where}: name must be 2 or more letters, digits, '-', '_' or '.'")
        elif ns.name in seen:
            problems.append(f"{where}: the name is used by another RPC namespace")
        seen.add(ns.name)
        check_name(where, ns.rpc_proxy_name)
    if not config.rpc_namespace_boundary and "rpc_namespace_boundary" not in bad:
        problems.append(f"{label('rpc_namespace_boundary')}: must not be empty")


def _check_personal(config: Config, bad: set[str], label: Callable[[str], str], problems: list[str]) -> None:
    """Personal channels (spec §10.1): the namespace must exist; single connection needs them."""
    ns = config.user_personal_channel_namespace
    if ns and "user_personal_channel_namespace" not in bad and ns not in config.namespaces:
        problems.append(f"{label('user_personal_channel_namespace')}: no namespace named {_show(ns)} is configured")
    if config.user_personal_single_connection and not config.user_subscribe_to_personal:
        problems.append(f"{label('user_personal_single_connection')}: needs user_subscribe_to_personal: true")


def worker_count(config: Config) -> int:
    """How many worker processes ``workers`` asks for ("auto" = one per core)."""
    return config.workers or os.cpu_count() or 1


def workers_problem(config: Config) -> str | None:
    """Why this many workers cannot run with this engine, or None."""
    if config.workers != 1 and config.engine == "memory":
        shown = "auto" if config.workers == 0 else str(config.workers)
        return (
            f'{shown} workers need a shared engine: set "engine": "redis" (each worker is a node, and '
            "nodes share publications, history and presence only through Redis), or run one worker"
        )
    return None


def split_host_port(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) to its parts; ValueError naming what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not _PORT_RANGE[0] <= int(port) <= _PORT_RANGE[1]:
        raise ValueError(f"must be host:port, got {_show(text)}")
    return host, int(port)


def redis_url(address: str) -> str:
    """A ``redis_address`` item as a URL: ``host:port`` means ``redis://host:port``."""
    scheme, sep, rest = address.partition("://")
    if sep:
        if scheme not in _REDIS_SCHEMES:
            shown = f"{scheme}://***@{rest.rsplit('@', 1)[1]}" if "@" in rest else address  # no password
            raise ValueError(f"must be a redis://, rediss:// or unix:// URL or host:port, got {_show(shown)}")
        return address
    host, port = split_host_port(address)
    return f"redis://[{host}]:{port}" if ":" in host else f"redis://{host}:{port}"


def cluster_seeds(element: str) -> list[tuple[str, int]]:
    """One ``redis_cluster_address`` element: comma-separated ``host:port`` seed nodes."""
    seeds = [split_host_port(seed) for seed in element.split(",") if seed.strip()]
    if not seeds:
        raise ValueError(f"must list at least one host:port seed node, got {_show(element)}")
    return seeds


def _check_redis(
    config: Config, bad: set[str], label: Callable[[str], str], problems: list[str], warnings: list[str]
) -> None:
    """The Redis topology: one or more servers, a Sentinel group, or Redis Clusters (spec §9.2)."""
    sentinel, cluster = config.redis_sentinel_address, config.redis_cluster_address
    checks: list[tuple[str, Callable[[str], object]]] = [
        ("redis_address", redis_url),
        ("redis_sentinel_address", split_host_port),
        ("redis_cluster_address", cluster_seeds),
    ]
    for key, check in checks:
        for i, item in enumerate(getattr(config, key)):
            try:
                check(item)
            except ValueError as exc:
                problems.append(f"{label(key)}: item {i} {exc}")
    if "redis_address" not in bad and not config.redis_address:
        problems.append(f"{label('redis_address')}: must list at least one Redis server")
    if sentinel and cluster:
        problems.append(
            f"{label('redis_cluster_address')}: cannot be combined with redis_sentinel_address; choose one topology"
        )
    if sentinel and not config.redis_sentinel_master_name:
        problems.append(f"{label('redis_sentinel_master_name')}: required with redis_sentinel_address")
    if config.redis_sentinel_master_name and not sentinel and "redis_sentinel_address" not in bad:
        problems.append(f"{label('redis_sentinel_address')}: required with redis_sentinel_master_name")
    if cluster and "redis_prefix" not in bad and ("{" in config.redis_prefix or "}" in config.redis_prefix):
        problems.append(f"{label('redis_prefix')}: must not contain {{ or }} with redis_cluster_address (hash tags)")
    if cluster and config.redis_db:
        problems.append(f"{label('redis_db')}: must be 0 with redis_cluster_address (a cluster has one database)")
    if config.engine != "redis" and (sentinel or cluster):
        key = "redis_sentinel_address" if sentinel else "redis_cluster_address"
        warnings.append(f'{label(key)}: set but engine is "{config.engine}"; ignored')


def _suffixed(where: str) -> Callable[[str], str]:
    return lambda key: f"{key}{where}"


def _unknown_key(where: str, key: str, known: Sequence[str]) -> str:
    if key in _UNSUPPORTED:
        return f"{where}: a Centrifugo option Herald does not support; remove it"
    if key in _SERVER_KINDS or key == "namespaces":
        return f"{where}: not a namespace option; set it at the top level"
    close = difflib.get_close_matches(key, known, n=1)
    return f'{where}: unknown key (did you mean "{close[0]}"?)' if close else f"{where}: unknown key"


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def _format_seconds(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
