"""Config parsing: Centrifugo v5 flat keys, HERALD_* overrides, one problem line per key (decisions §7)."""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from herald.gateway.config import DURATIONS as DURATION_KEYS
from herald.gateway.config import ChannelOptions, Config, ConfigError, load_config, parse_config
from tests.support.gateway import TEST_API_KEY as API_KEY
from tests.support.gateway import base_config

SEED = {"namespaces": [{"name": "critical", "history_size": 50, "history_ttl": "120s", "force_recovery": True}]}
SECRET = "0123456789abcdef0123456789abcdef"  # exactly 32 bytes
QUIET = {"token_hmac_secret_key": SECRET, "api_key": API_KEY}  # a config that raises no warnings


def problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env or {})
    return info.value.problems


def one_problem(data: dict[str, Any], env: dict[str, str] | None = None) -> str:
    lines = problems(data, env)
    assert len(lines) == 1, lines
    return lines[0]


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# --------------------------------------------------------------------------- defaults and seed


def test_defaults() -> None:
    config, warnings = parse_config({}, {})
    assert config == Config()
    assert config.namespaces == {} and config.channel_options == ChannelOptions()
    assert [w.split(":")[0] for w in warnings] == ["api_key", "token_hmac_secret_key"]


def test_seed_config() -> None:
    config, _ = parse_config(SEED, {})
    critical = config.namespaces["critical"]
    assert (critical.history_size, critical.history_ttl, critical.force_recovery) == (50, 120.0, True)
    assert critical.history_enabled and config.history_meta_ttl(critical) == 720 * 3600.0
    assert config.channel_options_for("critical:tenant_42") is critical
    assert config.channel_options_for("other:x") is None


def test_test_support_config_is_valid_and_quiet() -> None:
    _, warnings = parse_config(base_config(), {})
    assert warnings == []


def test_top_level_channel_options_are_flat_keys() -> None:
    config, _ = parse_config({**QUIET, "presence": True, "history_size": 10, "history_ttl": "1m"}, {})
    assert config.channel_options == ChannelOptions(presence=True, history_size=10, history_ttl=60.0)


def test_namespaces_keep_their_order() -> None:
    names = ["zeta", "alpha", "mid.dle", "with-dash_1"]
    config, _ = parse_config({"namespaces": [{"name": n} for n in names]}, {})
    assert list(config.namespaces) == names


def test_allowed_origins_becomes_a_tuple() -> None:
    config, _ = parse_config({"allowed_origins": ["https://a.example", "https://*.b.example"]}, {})
    assert config.allowed_origins == ("https://a.example", "https://*.b.example")


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("120s", 120.0),
        ("25s", 25.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("720h", 2_592_000.0),
        ("1h2m3.5s", 3723.5),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("300us", 300e-6),
        ("2µs", 2e-6),
        ("10ns", 10e-9),
        ("+2s", 2.0),
        ("0", 0.0),
    ],
)
def test_duration_syntax(text: str, seconds: float) -> None:
    config, _ = parse_config({"client_stale_close_delay": text}, {})
    assert config.client_stale_close_delay == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["120", "2 minutes", "s", "1x", "", "1.2.3s", "1s ", True, None, ["1s"]])
def test_bad_duration(value: Any) -> None:
    line = one_problem({"client_stale_close_delay": value})
    assert line.startswith('client_stale_close_delay: must be a duration string such as "120s"')


def test_bare_number_duration_is_refused_with_a_reason() -> None:
    line = one_problem({"namespaces": [{"name": "critical", "history_size": 50, "history_ttl": 120}]})
    assert line == (
        'history_ttl in namespace "critical": must be a duration string such as "120s", "1m30s" or "500ms", '
        "got 120 (Herald does not read bare numbers as nanoseconds)"
    )


def test_negative_duration() -> None:
    assert one_problem({"shutdown_timeout": "-5s"}) == 'shutdown_timeout: must not be negative, got "-5s"'


# --------------------------------------------------------------------------- environment overrides


@pytest.mark.parametrize(
    ("word", "expected"),
    [("true", True), ("1", True), ("YES", True), ("false", False), ("0", False), ("no", False)],
)
def test_env_bool(word: str, expected: bool) -> None:
    config, _ = parse_config({"client_insecure": not expected}, {"HERALD_CLIENT_INSECURE": word})
    assert config.client_insecure is expected


def test_env_overrides_each_kind() -> None:
    env = {
        "HERALD_PORT": "9001",
        "HERALD_PING_INTERVAL": "1m",
        "HERALD_API_KEY": "from-env",
        "HERALD_CLIENT_CONNECTION_RATE_LIMIT": "12.5",
        "HERALD_PRESENCE": "yes",  # a top-level channel option
    }
    config, _ = parse_config({"port": 8001, "api_key": "from-file"}, env)
    assert config.port == 9001
    assert config.ping_interval == 60.0
    assert config.api_key == "from-env"
    assert config.client_connection_rate_limit == 12.5
    assert config.channel_options.presence is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["https://a.example", "https://b.example"]', ("https://a.example", "https://b.example")),
        ("https://a.example, https://b.example", ("https://a.example", "https://b.example")),
        ("", ()),
    ],
)
def test_env_list(text: str, expected: tuple[str, ...]) -> None:
    config, _ = parse_config({"allowed_origins": ["https://file.example"]}, {"HERALD_ALLOWED_ORIGINS": text})
    assert config.allowed_origins == expected


def test_env_namespaces_json_replaces_the_file_list() -> None:
    env = {"HERALD_NAMESPACES": json.dumps(SEED["namespaces"])}
    config, _ = parse_config({"namespaces": [{"name": "old"}]}, env)
    assert list(config.namespaces) == ["critical"]
    assert config.namespaces["critical"].history_ttl == 120.0


def test_env_problems_name_key_and_variable() -> None:
    env = {
        "HERALD_CLIENT_INSECURE": "maybe",
        "HERALD_PORT": "eighty",
        "HERALD_NAMESPACES": "[{",
        "HERALD_PING_INTERVAL": "25",
    }
    lines = problems({}, env)
    assert lines[0] == (
        'client_insecure (from HERALD_CLIENT_INSECURE): must be one of true, false, 1, 0, yes, no, got "maybe"'
    )
    assert lines[1].startswith("namespaces (from HERALD_NAMESPACES): invalid JSON")
    assert lines[2] == 'port (from HERALD_PORT): must be an integer, got "eighty"'
    assert lines[3].startswith('ping_interval (from HERALD_PING_INTERVAL): must be a duration string such as "120s"')
    assert len(lines) == 4


def test_env_namespace_problem_names_the_variable() -> None:
    env = {"HERALD_NAMESPACES": '[{"name": "critical", "history_size": 5}]'}
    assert problems({}, env) == [
        'history_ttl in namespace "critical" (from HERALD_NAMESPACES): must be set when history_size is set '
        "(history needs both)"
    ]


def test_unknown_env_variable_is_only_a_warning() -> None:
    config, warnings = parse_config(QUIET, {"HERALD_TEST_TIME_UNIT": "2", "PATH": "/bin"})
    assert config.port == 8000
    assert warnings == ["HERALD_TEST_TIME_UNIT: environment variable matches no configuration key; ignored"]


def test_environ_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_PORT", "9123")
    config, _ = load_config(None)
    assert config.port == 9123


# --------------------------------------------------------------------------- keys and types


def test_unknown_key_suggests_the_closest() -> None:
    assert one_problem({"histroy_size": 5}) == 'histroy_size: unknown key (did you mean "history_size"?)'
    assert one_problem({"zzz": 1}) == "zzz: unknown key"
    line = one_problem({"namespaces": [{"name": "chat", "presense": True}]})
    assert line == 'presense in namespace "chat": unknown key (did you mean "presence"?)'


def test_unsupported_centrifugo_keys_and_misplaced_keys() -> None:
    line = one_problem({"proxy_subscribe_stream": True})
    assert line.startswith("proxy_subscribe_stream: a Centrifugo option Herald does not")
    line = one_problem({"namespaces": [{"name": "chat", "ping_interval": "5s"}]})
    assert line == 'ping_interval in namespace "chat": not a namespace option; set it at the top level'


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("client_insecure", "true", 'must be true or false, got "true"'),
        ("client_insecure", 1, "must be true or false, got 1"),
        ("port", "8000", 'must be an integer, got "8000"'),
        ("client_channel_limit", True, "must be an integer, got true"),
        ("history_size", 5.0, "must be an integer, got 5.0"),
        ("api_key", 5, "must be a string, got 5"),
        ("allowed_origins", "https://a.example", 'must be a list of strings, got "https://a.example"'),
        (
            "allowed_origins",
            ["https://a.example", 1],
            'must be a list of strings, got ["https://a.example", 1]',
        ),
        ("client_connection_rate_limit", "10", 'must be a number, got "10"'),
    ],
)
def test_wrong_types(key: str, value: Any, message: str) -> None:
    assert one_problem({key: value}) == f"{key}: {message}"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("port", 0, "must be between 1 and 65535, got 0"),
        ("port", 65536, "must be between 1 and 65535, got 65536"),
        ("client_queue_max_size", 0, "must be greater than 0, got 0"),
        ("websocket_message_size_limit", 0, "must be greater than 0, got 0"),
        ("channel_max_length", 0, "must be greater than 0, got 0"),
        ("ping_interval", "0s", 'must be greater than 0, got "0s"'),
        ("client_channel_limit", -1, "must not be negative, got -1"),
        ("client_connection_rate_limit", -0.5, "must not be negative, got -0.5"),
    ],
)
def test_ranges(key: str, value: Any, message: str) -> None:
    assert one_problem({key: value}) == f"{key}: {message}"


@pytest.mark.parametrize(
    ("key", "value", "choices"),
    [
        ("engine", "nats", '"memory", "redis"'),
        ("token_channels", "pattern", '"grant", "subscribe"'),
        ("api_error_mode", "http", '"", "transport"'),
        ("force_recovery_mode", "fast", '"", "stream", "cache"'),
        ("log_level", "trace", '"debug", "info", "warning", "error"'),
    ],
)
def test_enumerations(key: str, value: str, choices: str) -> None:
    assert one_problem({key: value}) == f'{key}: must be one of {choices}, got "{value}"'


def test_enumerations_accept_their_values() -> None:
    data = {
        "engine": "redis",
        "token_channels": "subscribe",
        "api_error_mode": "transport",
        "log_level": "debug",
    }
    config, _ = parse_config(data, {})
    assert (config.engine, config.token_channels, config.api_error_mode, config.log_level) == tuple(data.values())


# --------------------------------------------------------------------------- namespaces


@pytest.mark.parametrize("name", ["a", "bad name", "chat:x", "ü-umlaut", "ab\n"])
def test_namespace_name_rule(name: str) -> None:
    line = one_problem({"namespaces": [{"name": name}]})
    assert line.startswith(f"name in namespace {json.dumps(name, ensure_ascii=False)}: must be 2 or more letters")


def test_namespace_name_required_string_unique() -> None:
    data = {"namespaces": [{"presence": True}, {"name": 7}, {"name": "chat"}, {"name": "chat"}]}
    assert problems(data) == [
        "name in namespaces[0]: required",
        "name in namespaces[1]: must be a string, got 7",
        'name in namespace "chat": namespaces[3] repeats the name of namespaces[2]',
    ]


def test_namespaces_shape() -> None:
    line = one_problem({"namespaces": {"chat": {}}})
    assert line.startswith('namespaces: must be a list of objects such as [{"name": "chat"}]')
    assert one_problem({"namespaces": ["chat"]}) == 'namespaces[0]: must be an object with a name, got "chat"'


# --------------------------------------------------------------------------- channel option rules


def test_history_needs_size_and_ttl() -> None:
    line = one_problem({"history_size": 10})
    assert line == "history_ttl: must be set when history_size is set (history needs both)"
    line = one_problem({"namespaces": [{"name": "chat", "history_ttl": "1m"}]})
    assert line == 'history_size in namespace "chat": must be set when history_ttl is set (history needs both)'


@pytest.mark.parametrize("key", ["force_recovery", "allow_recovery"])
def test_recovery_needs_history(key: str) -> None:
    line = one_problem({"namespaces": [{"name": "chat", key: True}]})
    assert line == f'{key} in namespace "chat": needs history (set history_size and history_ttl)'


def test_recovery_mode_needs_recovery() -> None:
    history = {"history_size": 10, "history_ttl": "1m"}
    assert one_problem({**history, "force_recovery_mode": "cache"}) == (
        "force_recovery_mode: needs force_recovery or allow_recovery"
    )
    config, _ = parse_config({**history, "allow_recovery": True, "force_recovery_mode": "cache"}, {})
    assert config.channel_options.force_recovery_mode == "cache"


def test_history_ttl_within_meta_ttl() -> None:
    history = {"name": "chat", "history_size": 10, "history_ttl": "2h"}
    line = one_problem({"namespaces": [{**history, "history_meta_ttl": "1h"}]})
    assert line == 'history_ttl in namespace "chat": must not be longer than history_meta_ttl (1h), got 2h'
    line = one_problem({"global_history_meta_ttl": "90m", "namespaces": [history]})
    assert line == 'history_ttl in namespace "chat": must not be longer than global_history_meta_ttl (90m), got 2h'
    parse_config({"global_history_meta_ttl": "90m", "namespaces": [{**history, "history_meta_ttl": "3h"}]}, {})


def test_channel_regex_must_compile() -> None:
    line = one_problem({"namespaces": [{"name": "chat", "channel_regex": "(["}]})
    assert line.startswith('channel_regex in namespace "chat": invalid regular expression')
    config, _ = parse_config({"namespaces": [{"name": "chat", "channel_regex": r"^\d+$"}]}, {})
    assert config.namespaces["chat"].channel_regex == r"^\d+$"


def test_cross_checks_skip_keys_already_reported() -> None:
    # history_size is wrong already: "history needs both" would only be noise.
    assert one_problem({"history_size": "10", "history_ttl": "1m"}) == 'history_size: must be an integer, got "10"'
    assert one_problem({"ping_interval": 5, "pong_timeout": "8s"}).startswith("ping_interval: must be a duration")


# --------------------------------------------------------------------------- server rules


def test_pong_timeout_below_ping_interval() -> None:
    line = one_problem({"ping_interval": "10s", "pong_timeout": "10s"})
    assert line == "pong_timeout: must be less than ping_interval (10s), got 10s; 0 disables pong checking"
    config, _ = parse_config({"ping_interval": "10s", "pong_timeout": "0s"}, {})
    assert config.pong_timeout == 0.0


def test_weak_hmac_secret() -> None:
    line = one_problem({"token_hmac_secret_key": "secret"})
    assert line.startswith("token_hmac_secret_key: must be at least 32 bytes, got 6")
    config, warnings = parse_config({"token_hmac_secret_key": "secret", "allow_weak_secrets": True}, {})
    assert config.token_hmac_secret_key == "secret"
    assert any(
        w.startswith("token_hmac_secret_key: only 6 bytes, accepted because allow_weak_secrets") for w in warnings
    )


def test_hmac_secret_length_counts_utf8_bytes() -> None:
    parse_config({"token_hmac_secret_key": SECRET}, {})
    parse_config({"token_hmac_secret_key": "é" * 16}, {})  # 16 characters, 32 bytes
    assert one_problem({"token_hmac_secret_key": SECRET[:31]}).startswith("token_hmac_secret_key: must be at least")


def test_public_keys_must_be_pem_of_the_right_kind() -> None:
    rsa_pem = public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ec_pem = public_pem(ec.generate_private_key(ec.SECP256R1()))
    config, _ = parse_config({"token_rsa_public_key": rsa_pem, "token_ecdsa_public_key": ec_pem}, {})
    assert config.token_rsa_public_key == rsa_pem
    assert one_problem({"token_ecdsa_public_key": rsa_pem}) == "token_ecdsa_public_key: not an EC public key"
    assert one_problem({"token_rsa_public_key": ec_pem}) == "token_rsa_public_key: not an RSA public key"
    assert one_problem({"token_rsa_public_key": "nope"}).startswith("token_rsa_public_key: not a PEM public key")


def test_warnings_for_configs_that_serve_nobody() -> None:
    _, warnings = parse_config({}, {})
    assert (
        warnings[0] == "api_key: empty and api_insecure is false, so every server API request will be refused with 401"
    )
    assert (
        warnings[1].startswith("token_hmac_secret_key: no token key is set") and "no client can connect" in warnings[1]
    )
    _, warnings = parse_config({"api_insecure": True, "client_insecure": True}, {})
    assert warnings == []
    _, warnings = parse_config({"api_key": API_KEY, "allow_anonymous_connect_without_token": True}, {})
    assert warnings == []


def test_short_api_keys_are_warned_about() -> None:
    base = {"token_hmac_secret_key": SECRET}
    _, warnings = parse_config({**base, "api_key": "k"}, {})
    assert warnings == ["api_key: only 1 bytes; use a random key of at least 32 bytes (herald genconfig makes one)"]
    scoped = [{"key": "short-staging-key", "channel_prefix": "staging_"}]
    _, warnings = parse_config({**base, "api_key": API_KEY, "api_keys": scoped}, {})
    assert warnings == [
        "api_keys: item 0 only 17 bytes; use a random key of at least 32 bytes (herald genconfig makes one)"
    ]
    _, warnings = parse_config({**base, "api_key": "x" * 32}, {})
    assert warnings == []
    _, warnings = parse_config(base, {"HERALD_API_KEY": "short"})
    assert warnings == [
        "api_key (from HERALD_API_KEY): only 5 bytes; use a random key of at least 32 bytes "
        "(herald genconfig makes one)"
    ]


def test_a_drain_window_that_does_not_fit_shutdown_timeout_is_warned_about() -> None:
    quiet = {"api_insecure": True, "client_insecure": True}
    _, warnings = parse_config({**quiet, "shutdown_drain_window": "30s", "shutdown_timeout": "10s"}, {})
    assert warnings == [
        "shutdown_drain_window: 30s does not fit inside shutdown_timeout (10s); connections still open "
        "when the timeout ends are closed at once"
    ]
    assert parse_config({**quiet, "shutdown_drain_window": "5s", "shutdown_timeout": "30s"}, {})[1] == []
    assert parse_config({**quiet, "shutdown_drain_window": "60s", "shutdown_timeout": "0s"}, {})[1] == []


# --------------------------------------------------------------------------- reporting


def test_all_problems_are_reported_together() -> None:
    data = {
        "port": "80",
        "histroy_size": 5,
        "engine": "nats",
        "token_hmac_secret_key": "short",
        "namespaces": [{"name": "critical", "history_size": 50, "history_ttl": 120}, {"name": "x"}],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, {"HERALD_TEST_TIME_UNIT": "1"})
    keys = [re.split(r"[ :]", line)[0] for line in info.value.problems]
    assert keys == ["port", "histroy_size", "engine", "history_ttl", "name", "token_hmac_secret_key"]
    assert str(info.value) == "\n".join(info.value.problems)
    assert info.value.warnings[0].startswith("HERALD_TEST_TIME_UNIT:")


# --------------------------------------------------------------------------- files


def test_load_json_file(tmp_path: Path) -> None:
    path = tmp_path / "herald.json"
    path.write_text(json.dumps(SEED))
    config, _ = load_config(path, {})
    assert list(config.namespaces) == ["critical"]
    config, _ = load_config(str(path), {"HERALD_PORT": "8100"})
    assert config.port == 8100


def test_load_file_problems_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigError, match=r"missing\.json: cannot read config file: No such file"):
        load_config(missing, {})
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "port": 8000,\n  "api_key" "k"\n}')
    with pytest.raises(ConfigError) as info:
        load_config(broken, {})
    assert info.value.problems == [f"{broken}: invalid JSON at line 3, column 13: Expecting ':' delimiter"]
    listed = tmp_path / "list.json"
    listed.write_text("[]")
    with pytest.raises(ConfigError, match=r"list\.json: the top level must be an object of keys, got list"):
        load_config(listed, {})


def test_load_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "herald.toml"
    path.write_text(
        'port = 8200\nping_interval = "20s"\n\n'
        '[[namespaces]]\nname = "critical"\nhistory_size = 50\nhistory_ttl = "120s"\nforce_recovery = true\n'
    )
    config, _ = load_config(path, {})
    assert (config.port, config.ping_interval) == (8200, 20.0)
    assert config.namespaces["critical"].history_size == 50
    path.write_text("port = ")
    with pytest.raises(ConfigError, match=r"herald\.toml: invalid TOML"):
        load_config(path, {})


def test_load_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "herald.yaml"
    path.write_text("port: 8300\nnamespaces:\n  - name: critical\n    history_size: 50\n    history_ttl: 120s\n")
    if importlib.util.find_spec("yaml") is None:
        with pytest.raises(ConfigError, match=r"herald\.yaml: reading YAML needs PyYAML"):
            load_config(path, {})
    else:
        config, _ = load_config(path, {})
        assert config.port == 8300 and config.namespaces["critical"].history_ttl == 120.0


# --------------------------------------------------------------------------- documentation


def documented_default(key: str, value: object) -> str:
    """A default as the reference writes it: JSON, durations as strings."""
    if isinstance(value, float) and key in DURATION_KEYS:
        hours = value / 3600
        return f'"{hours:g}h"' if value and hours.is_integer() else f'"{value:g}s"'
    if isinstance(value, float):
        return f"{value:g}"
    if key == "proxy_static_http_headers":  # a JSON object in the config, held as pairs
        return json.dumps(dict(value))
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def test_every_key_is_documented_with_its_default() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| `([^`]*)` \|", doc, flags=re.MULTILINE))
    expected = {"namespaces": "[]"}
    for cls in (Config, ChannelOptions):
        flat = [f for f in fields(cls) if f.name not in ("channel_options", "namespaces")]
        expected.update({f.name: documented_default(f.name, f.default) for f in flat})
    assert {key: rows.get(key) for key in expected} == expected
