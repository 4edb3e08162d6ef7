"""Config keys of the proxy (proxy.md §1.1): parsed, and every bad value named by its key."""

from __future__ import annotations

from typing import Any

import pytest

from herald.gateway.config import ConfigError, parse_config
from tests.support.gateway import TEST_API_KEY as API_KEY

QUIET = {"token_hmac_secret_key": "0123456789abcdef0123456789abcdef", "api_key": API_KEY}


def problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config({**QUIET, **data}, env or {})
    return info.value.problems


def test_a_full_proxy_config_parses() -> None:
    config, warnings = parse_config(
        {
            **QUIET,
            "proxy_connect_endpoint": "http://app.internal:8080/centrifugo/connect",
            "proxy_rpc_endpoint": "https://app.internal/centrifugo/rpc",
            "proxy_subscribe_endpoint": "http://app.internal/centrifugo/subscribe",
            "proxy_connect_timeout": "500ms",
            "proxy_http_headers": ["Cookie", "Authorization", "X-Forwarded-For"],
            "proxy_static_http_headers": {"X-Proxy-Secret": "s3cret"},
            "proxy_include_connection_meta": True,
            "proxy_max_concurrency": 16,
            "namespaces": [{"name": "room", "proxy_subscribe": True, "proxy_publish": False}],
        },
        {},
    )
    assert config.proxy_connect_timeout == 0.5
    assert config.proxy_rpc_timeout == 1.0  # the default
    assert config.proxy_static_http_headers == (("X-Proxy-Secret", "s3cret"),)
    assert config.proxy_max_concurrency == 16
    assert config.namespaces["room"].proxy_subscribe
    assert warnings == []


def test_environment_overrides() -> None:
    env = {
        "HERALD_PROXY_CONNECT_ENDPOINT": "http://127.0.0.1:9000/connect",
        "HERALD_PROXY_HTTP_HEADERS": "Cookie,X-Real-Ip",
        "HERALD_PROXY_STATIC_HTTP_HEADERS": '{"X-A": "b"}',
        "HERALD_PROXY_CONNECT_TIMEOUT": "2s",
    }
    config, _ = parse_config(QUIET, env)
    assert config.proxy_connect_endpoint == "http://127.0.0.1:9000/connect"
    assert config.proxy_http_headers == ("Cookie", "X-Real-Ip")
    assert config.proxy_static_http_headers == (("X-A", "b"),)
    assert config.proxy_connect_timeout == 2.0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"proxy_connect_endpoint": "app.internal/connect"},
            'proxy_connect_endpoint: must be an http:// or https:// URL, got "app.internal/connect"',
        ),
        (
            {"proxy_rpc_endpoint": "grpc://app:9000"},
            "proxy_rpc_endpoint: must be an http:// or https:// URL (GRPC proxies are not supported), "
            'got "grpc://app:9000"',
        ),
        ({"proxy_publish_endpoint": "http:///path"}, 'proxy_publish_endpoint: the URL has no host, got "http:///path"'),
        ({"proxy_refresh_endpoint": 5}, "proxy_refresh_endpoint: must be a string, got 5"),
        ({"proxy_connect_timeout": "-1s"}, 'proxy_connect_timeout: must be greater than 0, got "-1s"'),
        ({"proxy_rpc_timeout": "0s"}, 'proxy_rpc_timeout: must be greater than 0, got "0s"'),
        (
            {"proxy_subscribe_timeout": 1},
            'proxy_subscribe_timeout: must be a duration string such as "120s", "1m30s" or "500ms", got 1 '
            "(Herald does not read bare numbers as nanoseconds)",
        ),
        ({"proxy_max_concurrency": 0}, "proxy_max_concurrency: must be greater than 0, got 0"),
        (
            {"proxy_http_headers": ["Cookie", "Bad Name"]},
            'proxy_http_headers: "Bad Name" is not a valid HTTP header name',
        ),
        (
            {"proxy_static_http_headers": ["X-A"]},
            'proxy_static_http_headers: must be an object of strings such as {"X-Api-Key": "..."}, got ["X-A"]',
        ),
        (
            {"proxy_static_http_headers": {"X-A": "one\r\nX-B: two"}},
            'proxy_static_http_headers: the value of "X-A" must be one line',
        ),
        (
            {"namespaces": [{"name": "room", "proxy_publish": "yes"}]},
            'proxy_publish in namespace "room": must be true or false, got "yes"',
        ),
        (
            {"proxy_http_status_code_transforms": []},
            "proxy_http_status_code_transforms: a Centrifugo option Herald does not support; remove it",
        ),
    ],
)
def test_bad_values_are_named_by_key(data: dict[str, Any], expected: str) -> None:
    assert problems(data) == [expected]


def test_bad_env_value_names_the_variable() -> None:
    assert problems({}, {"HERALD_PROXY_RPC_TIMEOUT": "soon"}) == [
        'proxy_rpc_timeout (from HERALD_PROXY_RPC_TIMEOUT): must be a duration string such as "120s", "1m30s" or '
        '"500ms" (units h, m, s, ms, us, ns), got "soon"'
    ]


def test_a_proxied_namespace_without_its_endpoint_is_warned_about() -> None:
    _, warnings = parse_config({**QUIET, "namespaces": [{"name": "room", "proxy_subscribe": True}]}, {})
    assert warnings == [
        'proxy_subscribe in namespace "room": true but proxy_subscribe_endpoint is empty, so clients get error 108 '
        "(not available)"
    ]


def test_a_connect_proxy_counts_as_a_way_to_connect() -> None:
    _, warnings = parse_config({"api_key": API_KEY, "proxy_connect_endpoint": "http://app/connect"}, {})
    assert warnings == []


GRANULAR = {
    "granular_proxy_mode": True,
    "proxies": [
        {"name": "auth", "endpoint": "http://auth.internal/connect", "timeout": "2s", "http_headers": ["Cookie"]},
        {"name": "chat", "endpoint": "http://chat.internal/proxy", "static_http_headers": {"X-Service": "chat"}},
    ],
    "connect_proxy_name": "auth",
    "rpc_namespaces": [{"name": "chat", "rpc_proxy_name": "chat"}, {"name": "off"}],
    "namespaces": [{"name": "room", "subscribe_proxy_name": "chat", "publish_proxy_name": "chat"}],
}


def test_a_granular_config_parses() -> None:
    config, warnings = parse_config({**QUIET, **GRANULAR}, {})
    assert [(p.name, p.timeout) for p in config.proxies] == [("auth", 2.0), ("chat", 1.0)]
    assert config.proxies[1].static_http_headers == (("X-Service", "chat"),)
    assert [(ns.name, ns.rpc_proxy_name) for ns in config.rpc_namespaces] == [("chat", "chat"), ("off", "")]
    assert config.namespaces["room"].subscribe_proxy_name == "chat"
    assert warnings == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"refresh_proxy_name": "nope"},
            ['refresh_proxy_name: no proxy named "nope" in proxies'],
        ),
        (
            {"namespaces": [{"name": "room", "sub_refresh_proxy_name": "gone"}]},
            ['sub_refresh_proxy_name in namespace "room": no proxy named "gone" in proxies'],
        ),
        (
            {"proxy_rpc_endpoint": "http://app/rpc"},
            [
                "proxy_rpc_endpoint: not used in granular_proxy_mode; define the proxy in proxies and name it "
                "with rpc_proxy_name"
            ],
        ),
        (
            {"namespaces": [{"name": "room", "proxy_subscribe": True}]},
            ['proxy_subscribe in namespace "room": not used in granular_proxy_mode; set subscribe_proxy_name'],
        ),
        (
            {"proxies": [{"name": "a1", "endpoint": "http://x/"}, {"name": "a1", "endpoint": "ftp://x/"}]},
            [
                'proxies: item 1 ("a1"): the name is used by another proxy',
                'proxies: item 1 ("a1"): endpoint must be an http:// or https:// URL, got "ftp://x/"',
            ],
        ),
        ({"proxies": [{"name": "a1"}]}, ["proxies: item 0: endpoint is required"]),
        (
            {"proxies": [{"name": "a1", "endpoint": "http://x/", "timeout": "-2s"}]},
            ['proxies: item 0: timeout: must not be negative, got "-2s"'],
        ),
        (
            {"proxies": [{"name": "a1", "endpoint": "http://x/", "retries": 3}]},
            [
                'proxies: item 0: unknown key "retries" (known: name, endpoint, timeout, http_headers, '
                "static_http_headers, binary_encoding, include_connection_meta)"
            ],
        ),
        (
            {"rpc_namespaces": [{"name": "x", "rpc_proxy_name": "auth"}]},
            ["rpc_namespaces: item 0 (\"x\"): name must be 2 or more letters, digits, '-', '_' or '.'"],
        ),
    ],
)
def test_bad_granular_configs(data: dict[str, Any], expected: list[str]) -> None:
    config = {**GRANULAR, "namespaces": [], "connect_proxy_name": "", "rpc_namespaces": [], **data}
    if "proxies" not in data:
        config["proxies"] = GRANULAR["proxies"]
    assert problems(config) == expected


def test_granular_keys_need_granular_mode() -> None:
    assert problems({"connect_proxy_name": "auth", "namespaces": [{"name": "room", "publish_proxy_name": "x"}]}) == [
        "connect_proxy_name: needs granular_proxy_mode: true",
        'publish_proxy_name in namespace "room": needs granular_proxy_mode: true',
    ]
