"""Centrifugo v6 configuration files: the nested layout, mapped onto Herald's flat keys (spec §10.2).

Centrifugo v6 moved every v5 key into sections (``token_hmac_secret_key`` became
``client.token.hmac_secret_key``, channel options went to ``channel.without_namespace``...).
Herald validates flat keys only (the rest of this package), so a v6 file is first flattened
here, key by key, with the moves of the official v5→v6 converter; validation, defaults and the ``HERALD_<KEY>``
environment overrides then apply exactly as for a v5 file.

A file is v6 when one of its top-level keys is a v6 section holding an object: in v5 every such
key (``engine``, ``sse``, ``prometheus``...) holds a plain value. Nothing is ignored silently:
a v6 option Herald does not implement, an unknown v6 key, and a flat v5 key written into a v6
file are each reported by their v6 path. Problems that the package finds later name flat keys;
``relabel`` turns them back into the v6 paths the author wrote.

Options Herald has and Centrifugo does not (decisions §2, §4, §5) get paths in the section they
belong to (``shutdown.drain_window``, ``client.token.allow_weak_secrets``, ``http_api.keys``...).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

# v6 path → Herald flat key. Leaves only; the sections are the prefixes of these paths.
_TO_FLAT: Final[dict[str, str]] = {
    # http_server, node, log, shutdown
    "http_server.port": "port",
    "http_server.address": "address",
    "http_server.reuse_port": "reuse_port",  # Herald
    "http_server.workers": "workers",  # Herald
    "node.name": "name",
    "log.level": "log_level",
    "log.format": "log_format",  # Herald: text or json lines
    "shutdown.timeout": "shutdown_timeout",
    "shutdown.drain_window": "shutdown_drain_window",  # Herald (decisions §5)
    "prometheus.enabled": "prometheus",
    # engine
    "engine.type": "engine",
    "engine.redis.address": "redis_address",
    "engine.redis.prefix": "redis_prefix",
    "engine.redis.user": "redis_user",
    "engine.redis.password": "redis_password",
    "engine.redis.db": "redis_db",
    "engine.redis.sentinel_address": "redis_sentinel_address",
    "engine.redis.sentinel_master_name": "redis_sentinel_master_name",
    "engine.redis.sentinel_user": "redis_sentinel_user",
    "engine.redis.sentinel_password": "redis_sentinel_password",
    "engine.redis.cluster_address": "redis_cluster_address",
    "engine.redis.presence_ttl": "global_presence_ttl",
    # client.token
    "client.token.hmac_secret_key": "token_hmac_secret_key",
    "client.token.rsa_public_key": "token_rsa_public_key",
    "client.token.ecdsa_public_key": "token_ecdsa_public_key",
    "client.token.audience": "token_audience",
    "client.token.issuer": "token_issuer",
    "client.token.channels": "token_channels",  # Herald (decisions §1)
    "client.token.allow_without_exp": "token_allow_without_exp",  # Herald (decisions §4)
    "client.token.cache_size": "token_cache_size",  # Herald (decisions §5)
    "client.token.max_size": "token_max_size",  # Herald
    "client.token.allow_weak_secrets": "allow_weak_secrets",  # Herald (decisions §4)
    "client.token.hmac_secret_keys": "token_hmac_secret_keys",  # Herald (decisions §2)
    # client
    "client.allowed_origins": "allowed_origins",
    "client.insecure": "client_insecure",
    "client.allow_anonymous_connect_without_token": "allow_anonymous_connect_without_token",
    "client.disallow_anonymous_connection_tokens": "disallow_anonymous_connection_tokens",
    "client.ping_interval": "ping_interval",
    "client.pong_timeout": "pong_timeout",
    "client.channel_limit": "client_channel_limit",
    "client.user_connection_limit": "client_user_connection_limit",
    "client.connection_limit": "client_connection_limit",
    "client.connection_rate_limit": "client_connection_rate_limit",
    "client.connection_rate_burst": "client_connection_rate_burst",  # Herald
    "client.command_rate_limit": "client_command_rate_limit",  # Herald
    "client.command_rate_burst": "client_command_rate_burst",  # Herald
    "client.queue_max_size": "client_queue_max_size",
    "client.stale_close_delay": "client_stale_close_delay",
    "client.expired_close_delay": "client_expired_close_delay",
    "client.expired_sub_close_delay": "client_expired_sub_close_delay",
    "client.presence_update_interval": "client_presence_update_interval",
    "client.channel_position_check_delay": "client_channel_position_check_delay",
    "client.history_max_publication_limit": "client_history_max_publication_limit",
    "client.recovery_max_publication_limit": "client_recovery_max_publication_limit",
    "client.connect_include_server_time": "client_connect_include_server_time",
    "client.subscribe_to_user_personal_channel.enabled": "user_subscribe_to_personal",
    "client.subscribe_to_user_personal_channel.personal_channel_namespace": "user_personal_channel_namespace",
    "client.subscribe_to_user_personal_channel.single_connection": "user_personal_single_connection",
    # channel (channel.without_namespace and channel.namespaces are handled apart)
    "channel.max_length": "channel_max_length",
    "channel.private_prefix": "channel_private_prefix",
    "channel.namespace_boundary": "channel_namespace_boundary",
    "channel.user_boundary": "channel_user_boundary",
    "channel.user_separator": "channel_user_separator",
    "channel.history_meta_ttl": "global_history_meta_ttl",
    # server API
    "http_api.key": "api_key",
    "http_api.keys": "api_keys",  # Herald (decisions §2)
    "http_api.insecure": "api_insecure",
    "http_api.error_mode": "api_error_mode",
    "http_api.handler_prefix": "api_handler_prefix",
    "rpc.ping.enabled": "rpc_ping",
    "rpc.ping.method": "rpc_ping_method",
    # transports
    "websocket.handler_prefix": "websocket_handler_prefix",
    "websocket.message_size_limit": "websocket_message_size_limit",
    "websocket.compression": "websocket_compression",
    "websocket.compression_level": "websocket_compression_level",
    "websocket.compression_min_size": "websocket_compression_min_size",
    "http_stream.enabled": "http_stream",
    "http_stream.handler_prefix": "http_stream_handler_prefix",
    "sse.enabled": "sse",
    "sse.handler_prefix": "sse_handler_prefix",
    "emulation.handler_prefix": "emulation_handler_prefix",
    "emulation.max_request_body_size": "emulation_max_request_body_size",
    "uni_websocket.enabled": "uni_websocket",
    "uni_websocket.handler_prefix": "uni_websocket_handler_prefix",
    "uni_sse.enabled": "uni_sse",
    "uni_sse.handler_prefix": "uni_sse_handler_prefix",
    "uni_http_stream.enabled": "uni_http_stream",
    "uni_http_stream.handler_prefix": "uni_http_stream_handler_prefix",
    # admin web UI
    "admin.enabled": "admin",
    "admin.password": "admin_password",
    "admin.secret": "admin_secret",
    # proxies to the application backend (proxy.md §1.1): the endpoint and timeout of each event
    **{
        f"{section}.{leaf}": f"proxy_{kind}_{leaf}"
        for section, kind in (
            ("client.proxy.connect", "connect"),
            ("client.proxy.refresh", "refresh"),
            ("channel.proxy.subscribe", "subscribe"),
            ("channel.proxy.publish", "publish"),
            ("channel.proxy.sub_refresh", "sub_refresh"),
            ("rpc.proxy", "rpc"),
        )
        for leaf in ("endpoint", "timeout")
    },
    "rpc.namespace_boundary": "rpc_namespace_boundary",
}
# v6 sections of one proxy each; Herald has one set of these options for every proxy (the
# flat proxy_http_headers...), so the sections that set one must agree on its value.
_PROXY_SECTIONS: Final = (
    "client.proxy.connect",
    "client.proxy.refresh",
    "channel.proxy.subscribe",
    "channel.proxy.publish",
    "channel.proxy.sub_refresh",
    "rpc.proxy",
)
_PROXY_COMMON: Final = {
    "http_headers": "proxy_http_headers",
    "http.static_headers": "proxy_static_http_headers",
    "include_connection_meta": "proxy_include_connection_meta",
    "binary_encoding": "proxy_binary_encoding",
}
# v6 turns the connect and refresh proxies on with ``enabled``; Herald with the endpoint alone.
_PROXY_ENABLED: Final = ("client.proxy.connect.enabled", "client.proxy.refresh.enabled")
# Herald keys a v6 file cannot hold yet (their v6 shapes differ: named proxies are referred to
# without granular_proxy_mode, RPC namespaces carry proxy_enabled...): set them with their
# HERALD_<KEY> variable, which applies to a v6 file as to any other.
NO_V6_PATH: Final = frozenset(
    {
        "granular_proxy_mode",
        "proxies",
        "connect_proxy_name",
        "refresh_proxy_name",
        "rpc_proxy_name",
        "rpc_namespaces",
        "proxy_max_concurrency",
    }
)
_NOT_YET: Final = {"proxies": "proxies", "rpc.without_namespace": "rpc_proxy_name", "rpc.namespaces": "rpc_namespaces"}
WITHOUT_NAMESPACE: Final = "channel.without_namespace"
NAMESPACES: Final = "channel.namespaces"

# Centrifugo v6 options Herald does not implement: reported as such, not as typos. A section
# listed here stands for everything under it.
_UNSUPPORTED: Final = frozenset(
    {
        *(
            f"http_server.{k}"
            for k in (
                "internal_address",
                "internal_port",
                "tls",
                "tls_autocert",
                "tls_external",
                "internal_tls",
                "http3",
                "h2c_external",
                "external_http2_extended_connect",
            )
        ),
        "log.file",
        "node.info_metrics_aggregate_interval",
        *(
            f"prometheus.{k}"
            for k in ("handler_prefix", "instrument_http_handlers", "recovered_publications_histogram")
        ),
        *(
            f"engine.redis.{k}"
            for k in (
                "connect_timeout",
                "io_timeout",
                "client_name",
                "force_resp2",
                "tls",
                "sentinel_client_name",
                "sentinel_tls",
                "replica_client",
                "history_use_lists",
                "presence_hash_field_ttl",
                "presence_user_mapping",
            )
        ),
        *(
            f"client.token.{k}"
            for k in (
                "hmac_previous_secret_key",
                "hmac_previous_secret_key_valid_until",
                "jwks_public_endpoint",
                "audience_regex",
                "issuer_regex",
                "user_id_claim",
                "insecure_skip_jwks_endpoint_safety_check",
            )
        ),
        *(
            f"{section}.{k}"
            for section in _PROXY_SECTIONS
            for k in ("grpc_metadata", "emulated_headers", "grpc", "http.tls", "http.status_to_code_transforms")
        ),
        *(f"channel.proxy.{k}" for k in ("subscribe_stream", "map_publish", "map_remove", "shared_poll_refresh")),
        *(f"admin.{k}" for k in ("handler_prefix", "insecure", "web_path", "web_proxy_address", "external")),
        *(
            f"client.{k}"
            for k in (
                "subscription_token",
                "concurrency",
                "channel_position_max_time_lag",
                "insecure_skip_token_signature_verify",
                "user_id_http_header",
                "connect_code_to_unidirectional_disconnect",
            )
        ),
        "channel.publication_data_format",
        "http_api.disabled",
        "http_api.external",
        *(
            f"websocket.{k}"
            for k in (
                "disabled",
                "read_buffer_size",
                "use_write_buffer_pool",
                "write_buffer_size",
                "write_timeout",
                "decompressed_message_size_limit",
            )
        ),
        "sse.max_request_body_size",
        "http_stream.max_request_body_size",
        *(
            f"uni_websocket.{k}"
            for k in (
                "compression",
                "compression_min_size",
                "compression_level",
                "read_buffer_size",
                "use_write_buffer_pool",
                "write_buffer_size",
                "write_timeout",
                "message_size_limit",
                "decompressed_message_size_limit",
                "disable_closing_handshake",
                "disable_disconnect_push",
                "join_push_messages",
            )
        ),
        "uni_sse.max_request_body_size",
        "uni_sse.connect_code_to_http_response",
        "uni_http_stream.max_request_body_size",
        "uni_http_stream.connect_code_to_http_response",
        # whole sections
        "broker",
        "presence_manager",
        "map_broker",
        "controller",
        "shared_poll",
        "grpc_api",
        "consumers",
        "webtransport",
        "uni_grpc",
        "health",
        "swagger",
        "debug",
        "init",
        "opentelemetry",
        "graphite",
        "usage_stats",
        "pid_file",
        "enable_unreleased_features",
    }
)

# Channel options renamed by v6 (v6 name → v5 name); the rest keep their v5 names.
_OPTION_RENAMES: Final = {
    "subscribe_proxy_enabled": "proxy_subscribe",
    "publish_proxy_enabled": "proxy_publish",
    "sub_refresh_proxy_enabled": "proxy_sub_refresh",
    "subscribe_stream_proxy_enabled": "proxy_subscribe_stream",
}
# Channel options only v6 has, which Herald does not implement.
_UNSUPPORTED_OPTIONS: Final = frozenset(
    {
        "map_clients_presence_channel_prefix",
        "map_users_presence_channel_prefix",
        "auto_cache_recover",
        "allow_tags_filter",
        "publication_data_format",
        "subscribe_stream_proxy_bidirectional",
        "subscription_type",
        "map",
        "shared_poll",
    }
)

SHARED_PROXY_KEYS: Final = frozenset(_PROXY_COMMON.values())
_PROXY_PATHS: Final = {f"{section}.{leaf}": flat for section in _PROXY_SECTIONS for leaf, flat in _PROXY_COMMON.items()}
_SECTIONS: Final = frozenset(
    prefix
    for path in (*_TO_FLAT, *_UNSUPPORTED, *_PROXY_PATHS, *_PROXY_ENABLED, *_NOT_YET, WITHOUT_NAMESPACE, NAMESPACES)
    for prefix in (".".join(path.split(".")[:i]) for i in range(1, path.count(".") + 1))
)
_KNOWN_PATHS: Final = sorted(
    {*_TO_FLAT, *_UNSUPPORTED, *_PROXY_PATHS, *_PROXY_ENABLED, *_NOT_YET, *_SECTIONS, WITHOUT_NAMESPACE, NAMESPACES}
)
_FROM_FLAT: Final = {flat: path for path, flat in _TO_FLAT.items()}
_V6_OPTION_NAMES: Final = {v5: v6 for v6, v5 in _OPTION_RENAMES.items()}
_NOT_SUPPORTED: Final = "a Centrifugo v6 option Herald does not support; remove it"
_TOP_SECTIONS: Final = frozenset(path.split(".")[0] for path in _KNOWN_PATHS)


def is_v6(data: Mapping[str, Any]) -> bool:
    """Whether a decoded config file uses the v6 layout: a top-level v6 section holding an object."""
    return any(str(key) in _TOP_SECTIONS and isinstance(value, Mapping) for key, value in data.items())


def v6_path(flat_key: str) -> str | None:
    """The v6 path of a flat key, or None when v6 has no place for it."""
    return _FROM_FLAT.get(flat_key)


def flatten(data: Mapping[str, Any], channel_keys: Collection[str]) -> tuple[dict[str, Any], list[str]]:
    """A v6 file as Herald's flat keys, and one problem line per key that has no flat twin.

    ``channel_keys`` are Herald's channel options: the only keys ``channel.without_namespace``
    may hold (they land at the top level, beside the server keys)."""
    flat: dict[str, Any] = {}
    problems: list[str] = []
    shared: dict[str, dict[str, Any]] = {}  # flat proxy option -> {v6 path: value}
    _walk(data, "", flat, problems, channel_keys, shared)
    for key, values in shared.items():
        if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
            paths = ", ".join(values)
            problems.append(f"{paths}: differ; Herald has one {key} for every proxy, so set the same value in each")
        else:
            flat[key] = next(iter(values.values()))
    for path in _PROXY_ENABLED:
        endpoint = path.replace(".enabled", ".endpoint")
        enabled, has_endpoint = _get(data, path), bool(_get(data, endpoint))
        if enabled is True and not has_endpoint:
            problems.append(f"{path}: true but {endpoint} is empty")
        elif enabled is not True and has_endpoint:
            # Herald turns a proxy on by its endpoint: an endpoint left in place would call it.
            problems.append(f"{endpoint}: set while {path} is not true; set {path}: true, or remove the endpoint")
    return flat, problems


def _get(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _walk(
    node: Mapping[str, Any],
    prefix: str,
    flat: dict[str, Any],
    problems: list[str],
    channel_keys: Collection[str],
    shared: dict[str, dict[str, Any]],
) -> None:
    for raw_key, value in node.items():
        key = str(raw_key)
        path = f"{prefix}{key}"
        if path in _TO_FLAT:
            flat[_TO_FLAT[path]] = value
        elif path in _PROXY_PATHS:
            shared.setdefault(_PROXY_PATHS[path], {})[path] = value
        elif path in _PROXY_ENABLED:
            if not isinstance(value, bool):
                problems.append(f"{path}: must be true or false, got {json.dumps(value)}")
        elif path in _NOT_YET:
            key = _NOT_YET[path]
            problems.append(
                f"{path}: Herald does not read this from a v6 file yet; use a v5 file or HERALD_{key.upper()}"
            )
        elif path in _UNSUPPORTED:
            problems.append(f"{path}: {_NOT_SUPPORTED}")
        elif path == WITHOUT_NAMESPACE:
            if isinstance(value, Mapping):
                flat.update(_without_namespace(value, problems, channel_keys))
            else:
                problems.append(f"{path}: must be an object of channel options, got {type(value).__name__}")
        elif path == NAMESPACES:
            flat["namespaces"] = _namespaces(value, problems)
        elif path in _SECTIONS:
            if isinstance(value, Mapping):
                _walk(value, f"{path}.", flat, problems, channel_keys, shared)
            else:
                problems.append(f"{path}: must be an object (a Centrifugo v6 section), got {type(value).__name__}")
        elif not prefix and key in _FROM_FLAT:
            problems.append(f"{key}: a Centrifugo v5 key in a v6 file; write it as {_FROM_FLAT[key]}")
        else:
            problems.append(f"{path}: unknown Centrifugo v6 key{_did_you_mean(path, _KNOWN_PATHS)}")


def _did_you_mean(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _without_namespace(
    options: Mapping[str, Any], problems: list[str], channel_keys: Collection[str]
) -> dict[str, Any]:
    """Top-level channel options: only channel options, so no server key slips in through here."""
    result: dict[str, Any] = {}
    for key, value in _renamed(options, WITHOUT_NAMESPACE, problems).items():
        path = f"{WITHOUT_NAMESPACE}.{_V6_OPTION_NAMES.get(key, key)}"
        if key in channel_keys:
            result[key] = value
        elif key in _V6_OPTION_NAMES or key.endswith("_proxy_name"):
            problems.append(f"{path}: {_NOT_SUPPORTED}")
        else:
            problems.append(f"{path}: unknown channel option{_did_you_mean(key, sorted(channel_keys))}")
    return result


def _renamed(options: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    """One scope's channel options: v6 renames undone, v6-only options reported by path."""
    result: dict[str, Any] = {}
    for raw_key, value in options.items():
        key = str(raw_key)
        if key in _UNSUPPORTED_OPTIONS:
            problems.append(f"{where}.{key}: {_NOT_SUPPORTED}")
        else:
            result[_OPTION_RENAMES.get(key, key)] = value
    return result


def _namespaces(value: Any, problems: list[str]) -> Any:
    """``channel.namespaces`` items are v5 namespace objects except for the v6 renames; the loader
    checks them (and names a problem with the list itself)."""
    if not isinstance(value, list):
        return value
    return [
        _renamed(item, f"{NAMESPACES}[{index}]", problems) if isinstance(item, Mapping) else item
        for index, item in enumerate(value)
    ]


def relabel(lines: Sequence[str], channel_keys: Collection[str]) -> list[str]:
    """The loader's problem lines about flat keys, renamed to the v6 paths a v6 file spells them with.

    Only a line that starts with ``<flat key>:`` is renamed: a key set from the environment is
    labelled ``key (from HERALD_KEY)`` and keeps that label; a namespace line names an option,
    which keeps its v5 name in v6 except the proxy flags.
    """
    out: list[str] = []
    for line in lines:
        head, sep, rest = line.partition(":")
        if sep and head in _FROM_FLAT:
            line = f"{_FROM_FLAT[head]}:{rest}"
        elif sep and (head == "namespaces" or head.startswith("namespaces[")):
            line = f"channel.{line}"
        elif sep and head in channel_keys:
            line = f"{WITHOUT_NAMESPACE}.{_V6_OPTION_NAMES.get(head, head)}:{rest}"
        else:
            option, space, where = head.partition(" ")
            if sep and space and option in _V6_OPTION_NAMES:
                line = f"{_V6_OPTION_NAMES[option]} {where}:{rest}"
        out.append(line)
    return out
