"""Centrifugo v6 nested configs (spec §10.2): each read as the same Config as its v5 flat twin,
with the same HERALD_* overrides, and every key Herald cannot honour named by its v6 path."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from herald.gateway.config import Config, ConfigError, load_config, parse_config
from herald.gateway.config import v6 as config_v6
from tests.support.gateway import TEST_API_KEY as API_KEY

SECRET = "0123456789abcdef0123456789abcdef-v6"
QUIET_V5 = {"token_hmac_secret_key": SECRET, "api_key": API_KEY}
QUIET_V6 = {"client": {"token": {"hmac_secret_key": SECRET}}, "http_api": {"key": API_KEY}}


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of two v6 documents (b wins)."""
    out = dict(a)
    for key, value in b.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def assert_twins(v5: dict[str, Any], v6: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    """Both parse, to equal Configs, compared field by field so a difference names its field;
    and the pair sets something, so a v6 file read as all-defaults cannot pass."""
    assert config_v6.is_v6(v6) and not config_v6.is_v6(v5)
    from_v5, warnings_v5 = parse_config({**QUIET_V5, **v5}, env or {})
    from_v6, warnings_v6 = parse_config(merge(QUIET_V6, v6), env or {})
    for f in fields(Config):
        assert getattr(from_v6, f.name) == getattr(from_v5, f.name), f.name
    assert from_v6 != parse_config(QUIET_V5, {})[0], "the twins set nothing"
    assert len(warnings_v6) == len(warnings_v5)
    return from_v6


TOP_OPTIONS = {
    "presence": True,
    "join_leave": True,
    "allow_subscribe_for_client": True,
    "history_size": 10,
    "history_ttl": "60s",
    "allow_positioning": True,
    "channel_regex": "^[a-z_0-9]+$",
}
NAMESPACES = [
    {
        "name": "critical",
        "history_size": 50,
        "history_ttl": "120s",
        "history_meta_ttl": "24h",
        "force_recovery": True,
        "force_recovery_mode": "cache",
        "allowed_delta_types": ["fossil"],
        "delta_publish": True,
    },
    {"name": "chat", "presence": True, "allow_publish_for_subscriber": True, "allow_user_limited_channels": True},
]

ADMIN_PASSWORD = "correct-Horse-battery-staple-42!"
PROXY_COMMON = {
    "http_headers": ["Cookie", "Authorization"],
    "http": {"static_headers": {"X-Env": "prod"}},
    "include_connection_meta": True,
}

TWINS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "redis servers": (
        {
            "engine": "redis",
            "redis_address": ["redis://10.0.0.1:6379", "10.0.0.2:6380"],
            "redis_prefix": "shop",
            "redis_db": 2,
            "redis_user": "app",
            "redis_password": "pw",
            "global_presence_ttl": "30s",
        },
        {
            "engine": {
                "type": "redis",
                "redis": {
                    "address": ["redis://10.0.0.1:6379", "10.0.0.2:6380"],
                    "prefix": "shop",
                    "db": 2,
                    "user": "app",
                    "password": "pw",
                    "presence_ttl": "30s",
                },
            }
        },
    ),
    "redis one address as a string": (
        {"engine": "redis", "redis_address": "127.0.0.1:6390"},
        {"engine": {"type": "redis", "redis": {"address": "127.0.0.1:6390"}}},
    ),
    "sentinel": (
        {
            "engine": "redis",
            "redis_sentinel_address": ["10.0.0.1:26379", "10.0.0.2:26379"],
            "redis_sentinel_master_name": "mymaster",
            "redis_sentinel_user": "s",
            "redis_sentinel_password": "spw",
            "redis_password": "pw",
            "redis_db": 1,
        },
        {
            "engine": {
                "type": "redis",
                "redis": {
                    "sentinel_address": ["10.0.0.1:26379", "10.0.0.2:26379"],
                    "sentinel_master_name": "mymaster",
                    "sentinel_user": "s",
                    "sentinel_password": "spw",
                    "password": "pw",
                    "db": 1,
                },
            }
        },
    ),
    "cluster": (
        {"engine": "redis", "redis_cluster_address": ["10.0.0.1:7000,10.0.0.2:7001", "10.0.1.1:7000"]},
        {
            "engine": {
                "type": "redis",
                "redis": {"cluster_address": ["10.0.0.1:7000,10.0.0.2:7001", "10.0.1.1:7000"]},
            }
        },
    ),
    # Channel options keep their names in v6; only their place changes.
    "namespaces with history and recovery, top-level channel options": (
        {**TOP_OPTIONS, "namespaces": NAMESPACES},
        {"channel": {"without_namespace": TOP_OPTIONS, "namespaces": NAMESPACES}},
    ),
    "channel syntax": (
        {
            "channel_max_length": 100,
            "channel_private_prefix": "!",
            "channel_namespace_boundary": "/",
            "channel_user_boundary": "@",
            "channel_user_separator": ";",
            "global_history_meta_ttl": "48h",
        },
        {
            "channel": {
                "max_length": 100,
                "private_prefix": "!",
                "namespace_boundary": "/",
                "user_boundary": "@",
                "user_separator": ";",
                "history_meta_ttl": "48h",
            }
        },
    ),
    "client limits and timings": (
        {
            "ping_interval": "20s",
            "pong_timeout": "5s",
            "client_channel_limit": 64,
            "client_user_connection_limit": 3,
            "client_connection_limit": 10000,
            "client_connection_rate_limit": 50,
            "client_connection_rate_burst": 100,
            "client_command_rate_limit": 20,
            "client_command_rate_burst": 40,
            "client_queue_max_size": 262144,
            "client_stale_close_delay": "5s",
            "client_expired_close_delay": "10s",
            "client_expired_sub_close_delay": "11s",
            "client_presence_update_interval": "20s",
            "client_channel_position_check_delay": "30s",
            "client_history_max_publication_limit": 100,
            "client_recovery_max_publication_limit": 200,
            "client_connect_include_server_time": True,
        },
        {
            "client": {
                "ping_interval": "20s",
                "pong_timeout": "5s",
                "channel_limit": 64,
                "user_connection_limit": 3,
                "connection_limit": 10000,
                "connection_rate_limit": 50,
                "connection_rate_burst": 100,
                "command_rate_limit": 20,
                "command_rate_burst": 40,
                "queue_max_size": 262144,
                "stale_close_delay": "5s",
                "expired_close_delay": "10s",
                "expired_sub_close_delay": "11s",
                "presence_update_interval": "20s",
                "channel_position_check_delay": "30s",
                "history_max_publication_limit": 100,
                "recovery_max_publication_limit": 200,
                "connect_include_server_time": True,
            }
        },
    ),
    "api keys": (
        {
            "api_key": "main-key-main-key-main-key",
            "api_keys": [{"key": "staging-key-staging-key", "channel_prefix": "staging_"}],
            "api_error_mode": "transport",
            "api_handler_prefix": "/server-api",
        },
        {
            "http_api": {
                "key": "main-key-main-key-main-key",
                "keys": [{"key": "staging-key-staging-key", "channel_prefix": "staging_"}],
                "error_mode": "transport",
                "handler_prefix": "/server-api",
            }
        },
    ),
    "tokens, origins, anonymous access, personal channels": (
        {
            "token_hmac_secret_key": "another-secret-another-secret-another",
            "token_hmac_secret_keys": [{"key": "prod-secret-prod-secret-prod-secret!", "channel_prefix": "prod_"}],
            "token_audience": "shop",
            "token_issuer": "django",
            "token_channels": "subscribe",
            "token_allow_without_exp": True,
            "token_cache_size": 500,
            "token_max_size": 4096,
            "allowed_origins": ["https://shop.example.com", "https://*.example.org"],
            "allow_anonymous_connect_without_token": True,
            "disallow_anonymous_connection_tokens": True,
            "user_subscribe_to_personal": True,
            "user_personal_channel_namespace": "personal",
            "user_personal_single_connection": True,
            "namespaces": [{"name": "personal", "presence": True}],
        },
        {
            "client": {
                "token": {
                    "hmac_secret_key": "another-secret-another-secret-another",
                    "hmac_secret_keys": [{"key": "prod-secret-prod-secret-prod-secret!", "channel_prefix": "prod_"}],
                    "audience": "shop",
                    "issuer": "django",
                    "channels": "subscribe",
                    "allow_without_exp": True,
                    "cache_size": 500,
                    "max_size": 4096,
                },
                "allowed_origins": ["https://shop.example.com", "https://*.example.org"],
                "allow_anonymous_connect_without_token": True,
                "disallow_anonymous_connection_tokens": True,
                "subscribe_to_user_personal_channel": {
                    "enabled": True,
                    "personal_channel_namespace": "personal",
                    "single_connection": True,
                },
            },
            "channel": {"namespaces": [{"name": "personal", "presence": True}]},
        },
    ),
    "transports": (
        {
            "websocket_handler_prefix": "/ws",
            "websocket_message_size_limit": 32768,
            "websocket_compression": True,
            "websocket_compression_level": 3,
            "websocket_compression_min_size": 128,
            "http_stream": True,
            "http_stream_handler_prefix": "/stream",
            "sse": True,
            "sse_handler_prefix": "/events",
            "emulation_handler_prefix": "/emu",
            "emulation_max_request_body_size": 1024,
            "uni_websocket": True,
            "uni_websocket_handler_prefix": "/uni/ws",
            "uni_sse": True,
            "uni_sse_handler_prefix": "/uni/sse",
            "uni_http_stream": True,
            "uni_http_stream_handler_prefix": "/uni/stream",
            "rpc_ping": True,
            "rpc_ping_method": "hello",
        },
        {
            "websocket": {
                "handler_prefix": "/ws",
                "message_size_limit": 32768,
                "compression": True,
                "compression_level": 3,
                "compression_min_size": 128,
            },
            "http_stream": {"enabled": True, "handler_prefix": "/stream"},
            "sse": {"enabled": True, "handler_prefix": "/events"},
            "emulation": {"handler_prefix": "/emu", "max_request_body_size": 1024},
            "uni_websocket": {"enabled": True, "handler_prefix": "/uni/ws"},
            "uni_sse": {"enabled": True, "handler_prefix": "/uni/sse"},
            "uni_http_stream": {"enabled": True, "handler_prefix": "/uni/stream"},
            "rpc": {"ping": {"enabled": True, "method": "hello"}},
        },
    ),
    "server, node, log level, shutdown": (
        {
            "port": 9000,
            "address": "127.0.0.1",
            "name": "node-a",
            "log_level": "debug",
            "shutdown_timeout": "20s",
            "shutdown_drain_window": "3s",
            "prometheus": True,
            "reuse_port": True,
        },
        {
            "http_server": {"port": 9000, "address": "127.0.0.1", "reuse_port": True},
            "node": {"name": "node-a"},
            "log": {"level": "debug"},
            "shutdown": {"timeout": "20s", "drain_window": "3s"},
            "prometheus": {"enabled": True},
        },
    ),
    "admin web UI": (
        {"admin": True, "admin_password": ADMIN_PASSWORD, "admin_secret": "admin-session-secret-" * 2},
        {"admin": {"enabled": True, "password": ADMIN_PASSWORD, "secret": "admin-session-secret-" * 2}},
    ),
    "proxies: endpoints, timeouts, the options every proxy shares": (
        {
            "proxy_connect_endpoint": "http://app.internal/realtime/connect",
            "proxy_connect_timeout": "2s",
            "proxy_refresh_endpoint": "http://app.internal/realtime/refresh",
            "proxy_subscribe_endpoint": "http://app.internal/realtime/subscribe",
            "proxy_subscribe_timeout": "500ms",
            "proxy_publish_endpoint": "http://app.internal/realtime/publish",
            "proxy_sub_refresh_endpoint": "http://app.internal/realtime/sub_refresh",
            "proxy_rpc_endpoint": "http://app.internal/realtime/rpc",
            "proxy_http_headers": ["Cookie", "Authorization"],
            "proxy_static_http_headers": {"X-Env": "prod"},
            "proxy_include_connection_meta": True,
            "rpc_namespace_boundary": "/",
            "namespaces": [{"name": "chat", "proxy_subscribe": True, "proxy_publish": True, "proxy_sub_refresh": True}],
        },
        {
            "client": {
                "proxy": {
                    "connect": {
                        "enabled": True,
                        "endpoint": "http://app.internal/realtime/connect",
                        "timeout": "2s",
                        **PROXY_COMMON,
                    },
                    "refresh": {"enabled": True, "endpoint": "http://app.internal/realtime/refresh"},
                }
            },
            "channel": {
                "proxy": {
                    "subscribe": {
                        "endpoint": "http://app.internal/realtime/subscribe",
                        "timeout": "500ms",
                        **PROXY_COMMON,
                    },
                    "publish": {"endpoint": "http://app.internal/realtime/publish", **PROXY_COMMON},
                    "sub_refresh": {"endpoint": "http://app.internal/realtime/sub_refresh"},
                },
                "namespaces": [
                    {
                        "name": "chat",
                        "subscribe_proxy_enabled": True,
                        "publish_proxy_enabled": True,
                        "sub_refresh_proxy_enabled": True,
                    }
                ],
            },
            "rpc": {"proxy": {"endpoint": "http://app.internal/realtime/rpc"}, "namespace_boundary": "/"},
        },
    ),
}


@pytest.mark.parametrize("name", list(TWINS))
def test_a_v6_config_reads_as_its_v5_twin(name: str) -> None:
    v5, v6 = TWINS[name]
    assert_twins(v5, v6)


def test_every_server_key_has_a_v6_path() -> None:
    # A key added to Config without a v6 path could not be set from a v6 file: give it one, or
    # list it in NO_V6_PATH (then only its HERALD_<KEY> variable sets it beside a v6 file).
    keys = [f.name for f in fields(Config) if f.name not in ("channel_options", "namespaces")]
    placed = {*config_v6.SHARED_PROXY_KEYS, *config_v6.NO_V6_PATH}
    assert [key for key in keys if config_v6.v6_path(key) is None and key not in placed] == []


def test_environment_overrides_apply_to_a_v6_file() -> None:
    env = {"HERALD_API_KEY": "from-the-environment", "HERALD_CLIENT_CHANNEL_LIMIT": "7", "HERALD_PRESENCE": "true"}
    config = assert_twins({"client_channel_limit": 64}, {"client": {"channel_limit": 64}}, env)
    assert (config.api_key, config.client_channel_limit, config.channel_options.presence) == (
        "from-the-environment",
        7,
        True,
    )


def test_v5_files_are_not_taken_for_v6() -> None:
    # v5 has keys named like v6 sections, holding plain values.
    for v5 in ({"engine": "redis"}, {"sse": True, "prometheus": True}, {"namespaces": []}, {}):
        assert not config_v6.is_v6(v5)


def problems_of(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(merge(QUIET_V6, data), env or {})
    return info.value.problems


def test_keys_herald_does_not_support_are_named_by_their_v6_path() -> None:
    lines = problems_of(
        {
            "client": {
                "token": {"jwks_public_endpoint": "https://example.com/jwks"},
                "proxy": {"refresh": {"grpc_metadata": ["x"]}},
            },
            "admin": {"web_path": "/srv/admin"},
            "channel": {
                "without_namespace": {"subscribe_stream_proxy_enabled": True, "auto_cache_recover": True},
                "namespaces": [{"name": "chat", "allow_tags_filter": True}],
            },
            "engine": {"type": "redis", "redis": {"history_use_lists": True}},
        }
    )
    unsupported = "a Centrifugo v6 option Herald does not support"
    for path in (
        "client.token.jwks_public_endpoint",
        "client.proxy.refresh.grpc_metadata",
        "admin.web_path",
        "channel.without_namespace.subscribe_stream_proxy_enabled",
        "channel.without_namespace.auto_cache_recover",
        "channel.namespaces[0].allow_tags_filter",
        "engine.redis.history_use_lists",
    ):
        assert f"{path}: {unsupported}; remove it" in lines, (path, lines)
    assert len(lines) == 7, lines


def test_unknown_and_misplaced_keys_are_flagged() -> None:
    lines = problems_of(
        {
            "clinet": {"channel_limit": 3},
            "client": {"chanel_limit": 3},
            "channel": {"without_namespace": {"port": 9000}},
            "api_key": "flat",
        }
    )
    assert 'clinet: unknown Centrifugo v6 key (did you mean "client"?)' in lines
    assert 'client.chanel_limit: unknown Centrifugo v6 key (did you mean "client.channel_limit"?)' in lines
    assert any(line.startswith("channel.without_namespace.port: unknown channel option") for line in lines), lines
    assert "api_key: a Centrifugo v5 key in a v6 file; write it as http_api.key" in lines
    assert len(lines) == 4, lines


def test_value_problems_name_the_v6_path() -> None:
    lines = problems_of(
        {
            "client": {"token": {"hmac_secret_key": "short"}, "ping_interval": 25},
            "channel": {"without_namespace": {"history_size": 5}, "namespaces": [{"name": "x"}]},
        }
    )
    text = "\n".join(lines)
    assert text.startswith("client.ping_interval: must be a duration string"), text
    assert "channel.without_namespace.history_ttl: must be set when history_size is set" in text
    assert 'name in namespace "x": must be 2 or more letters' in text
    assert "client.token.hmac_secret_key: must be at least 32 bytes, got 5" in text
    # A key set from the environment keeps the name of its variable.
    env_lines = problems_of({}, {"HERALD_PING_INTERVAL": "often"})
    assert env_lines == [
        'ping_interval (from HERALD_PING_INTERVAL): must be a duration string such as "120s", '
        '"1m30s" or "500ms" (units h, m, s, ms, us, ns), got "often"'
    ]


def test_a_v6_toml_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "herald.toml"
    path.write_text(
        f"""
[client.token]
hmac_secret_key = "{SECRET}"

[http_api]
key = "{API_KEY}"

[engine]
type = "redis"
[engine.redis]
address = ["127.0.0.1:6390"]

[[channel.namespaces]]
name = "critical"
history_size = 50
history_ttl = "120s"
force_recovery = true
"""
    )
    config, warnings = load_config(path, {})
    assert warnings == []
    assert config.engine == "redis" and config.redis_address == ("127.0.0.1:6390",)
    assert config.namespaces["critical"].force_recovery and config.token_hmac_secret_key == SECRET


def test_proxy_options_herald_shares_must_agree_and_enabled_must_match_the_endpoint() -> None:
    lines = problems_of(
        {
            "client": {
                "proxy": {
                    "connect": {"endpoint": "http://app/connect", "http_headers": ["Cookie"]},
                    "refresh": {"enabled": True},
                }
            },
            "channel": {"proxy": {"subscribe": {"endpoint": "http://app/sub", "http_headers": ["Authorization"]}}},
            "proxies": [{"name": "one", "endpoint": "http://app/one"}],
        }
    )
    assert (
        "client.proxy.connect.http_headers, channel.proxy.subscribe.http_headers: differ; Herald has one "
        "proxy_http_headers for every proxy, so set the same value in each"
    ) in lines
    assert (
        "client.proxy.connect.endpoint: set while client.proxy.connect.enabled is not true; "
        "set client.proxy.connect.enabled: true, or remove the endpoint"
    ) in lines
    assert "client.proxy.refresh.enabled: true but client.proxy.refresh.endpoint is empty" in lines
    assert "proxies: Herald does not read this from a v6 file yet; use a v5 file or HERALD_PROXIES" in lines
    assert len(lines) == 4, lines
