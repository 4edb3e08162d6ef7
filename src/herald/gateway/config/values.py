"""Single values: the kind of every key, conversions from JSON and from ``HERALD_*`` text,
Go durations, and the nested lists (namespaces, scoped keys, named proxies)."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any, Final

from herald.gateway.config.model import (
    DELTA_TYPES,
    NAMESPACE_NAME_RE,
    PORT_RANGE,
    ChannelOptions,
    Config,
    ProxySettings,
    RpcNamespace,
    ScopedKey,
)


class ConfigError(Exception):
    """The config cannot be used; ``problems`` has one line per problem, each naming its key."""

    def __init__(self, problems: Sequence[str], warnings: Sequence[str] = ()) -> None:
        self.problems: list[str] = list(problems)
        # Kept so that ``herald check`` can print the warnings next to the problems.
        self.warnings: list[str] = list(warnings)
        super().__init__("\n".join(self.problems))


class Invalid(Exception):
    """One bad value; the message completes the line ``<key><where>: <message>``."""


# Float fields that are durations (written as Go duration strings); other floats are plain numbers.
DURATIONS: Final = frozenset(
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


# Lists that also take a single string, as Centrifugo does (a string is a list of one).
_ONE_OR_MANY: Final = frozenset({"redis_address", "redis_sentinel_address", "redis_cluster_address"})


# A list whose items contain commas: from the environment, a plain string is one item.
_COMMA_ITEMS: Final = frozenset({"redis_cluster_address"})


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
            kinds[f.name] = "duration" if f.name in DURATIONS else kind
    return kinds


SERVER_KINDS: Final = _kinds(Config)


CHANNEL_KINDS: Final = _kinds(ChannelOptions)


TOP_LEVEL_KEYS: Final = sorted([*SERVER_KINDS, *CHANNEL_KINDS, "namespaces"])


_NAMESPACE_KEYS: Final = sorted([*CHANNEL_KINDS, "name"])


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


def from_env(kind: str, text: str, key: str = "") -> Any:
    """Turn an environment string into the value a JSON file would hold for this kind of key."""
    if kind == "bool":
        try:
            return _ENV_BOOLS[text.strip().lower()]
        except KeyError:
            raise Invalid(f"must be one of true, false, 1, 0, yes, no, got {show(text)}") from None
    if kind == "workers" and text.strip() == "auto":
        return "auto"
    if kind in ("int", "number", "workers"):
        try:
            return float(text) if kind == "number" else int(text)
        except ValueError:
            raise Invalid(f"must be {'an integer' if kind == 'int' else 'a number'}, got {show(text)}") from None
    if kind in ("namespaces", "scopedkeys", "strmap", "proxies", "rpcnamespaces") or (
        kind == "strlist" and text.lstrip().startswith("[")
    ):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise Invalid(f"invalid JSON ({exc})") from None
    if kind == "strlist" and key in _COMMA_ITEMS:
        return [text.strip()]  # one item: its commas are its own (use JSON for several)
    if kind == "strlist":
        return [item.strip() for item in text.split(",") if item.strip()]
    return text  # str and duration: the string itself


def convert(key: str, kind: str, value: Any) -> Any:
    """Check one value against its kind and limits; return it as the dataclass field holds it."""
    shown = show(value)
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool" and not isinstance(value, bool):
        raise Invalid(f"must be true or false, got {shown}")
    if kind == "int" and (not is_number or not isinstance(value, int)):
        raise Invalid(f"must be an integer, got {shown}")
    if kind == "number":
        if not is_number or not math.isfinite(value):
            raise Invalid(f"must be a number, got {shown}")
        value = float(value)
    if kind == "str" and not isinstance(value, str):
        raise Invalid(f"must be a string, got {shown}")
    if kind == "strlist":
        if key in _ONE_OR_MANY and isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise Invalid(f"must be a list of strings, got {shown}")
        value = tuple(value)
    if kind == "duration":
        value = _parse_duration(value, shown)
    if kind == "workers":
        if value == "auto":
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise Invalid(f'must be a whole number of processes (1 or more) or "auto", got {shown}')
    if kind == "scopedkeys":
        value = _scoped_keys(value, shown)
    if kind == "proxies":
        value = _named_proxies(value, shown)
    if kind == "rpcnamespaces":
        value = _rpc_namespaces(value, shown)
    if kind == "strmap":
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise Invalid(f'must be an object of strings such as {{"X-Api-Key": "..."}}, got {shown}')
        value = tuple((str(k), v) for k, v in value.items())
    if key in _CHOICES and value not in _CHOICES[key]:
        raise Invalid(f"must be one of {', '.join(json.dumps(c) for c in _CHOICES[key])}, got {shown}")
    if kind in ("int", "number", "duration"):
        if key == "port" and not PORT_RANGE[0] <= value <= PORT_RANGE[1]:
            raise Invalid(f"must be between {PORT_RANGE[0]} and {PORT_RANGE[1]}, got {shown}")
        if key in _POSITIVE and value <= 0:
            raise Invalid(f"must be greater than 0, got {shown}")
        if value < 0:
            raise Invalid(f"must not be negative, got {shown}")
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
        raise Invalid(f"{shape}, got {shown}")
    result = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise Invalid(f"{shape}; item {i} is {show(item)}")
        values: dict[str, Any] = {}
        for key, raw in item.items():
            kind = _PROXY_KINDS.get(str(key))
            if kind is None:
                raise Invalid(f"item {i}: unknown key {show(key)} (known: {', '.join(_PROXY_KINDS)})")
            try:
                values[str(key)] = convert(str(key), kind, raw)
            except Invalid as exc:
                raise Invalid(f"item {i}: {key}: {exc}") from None
        for required in ("name", "endpoint"):
            if not values.get(required):
                raise Invalid(f"item {i}: {required} is required")
        if values.get("timeout") == 0:
            raise Invalid(f"item {i}: timeout: must be greater than 0")
        result.append(ProxySettings(**values))
    return tuple(result)


def _rpc_namespaces(value: Any, shown: str) -> tuple[RpcNamespace, ...]:
    """``rpc_namespaces``: ``[{"name": "ns1", "rpc_proxy_name": "rpc1"}]`` (proxy.md §1.2)."""
    shape = 'must be a list of {"name": "...", "rpc_proxy_name": "..."} objects'
    if not isinstance(value, list | tuple):
        raise Invalid(f"{shape}, got {shown}")
    result = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping) or not set(item) <= {"name", "rpc_proxy_name"}:
            raise Invalid(f"{shape}; item {i} is {show(item)}")
        if not all(isinstance(v, str) for v in item.values()) or not item.get("name"):
            raise Invalid(f"item {i}: name (required) and rpc_proxy_name must be strings")
        result.append(RpcNamespace(item["name"], item.get("rpc_proxy_name", "")))
    return tuple(result)


def _scoped_keys(value: Any, shown: str) -> tuple[ScopedKey, ...]:
    """``[{"key": "...", "channel_prefix": "prod_"}, ...]``: both strings, both non-empty."""
    shape = 'must be a list of {"key": "...", "channel_prefix": "..."} objects'
    if not isinstance(value, list | tuple):
        raise Invalid(f"{shape}, got {shown}")
    keys = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"key", "channel_prefix"}:
            raise Invalid(f"{shape}; item {i} is {show(item)}")
        if not all(isinstance(item[k], str) and item[k] for k in ("key", "channel_prefix")):
            raise Invalid(f"item {i}: key and channel_prefix must be non-empty strings")
        keys.append(ScopedKey(item["key"], item["channel_prefix"]))
    return tuple(keys)


def _parse_duration(value: Any, shown: str) -> float:
    """Go ``time.ParseDuration`` syntax to seconds. Numbers are refused: Centrifugo would read
    them as nanoseconds, which is never what a config author means."""
    if not isinstance(value, str):
        why = " (Herald does not read bare numbers as nanoseconds)" if isinstance(value, int | float) else ""
        raise Invalid(f"{_DURATION_HINT}, got {shown}{why}")
    if value in ("0", "+0", "-0"):  # Go accepts a unitless zero
        return 0.0
    match = _DURATION_RE.fullmatch(value)
    if match is None:
        raise Invalid(f"{_DURATION_HINT} (units h, m, s, ms, us, ns), got {shown}")
    seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART_RE.findall(value))
    return -seconds if match.group(1) == "-" else seconds


def parse_channel_options(
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
            f"{label('history_ttl')}: must not be longer than {meta_key} ({format_seconds(meta_ttl)}), "
            f"got {format_seconds(opts.history_ttl)}"
        )
    for delta_type in opts.allowed_delta_types:
        if ok("allowed_delta_types") and delta_type not in DELTA_TYPES:
            problems.append(f'{label("allowed_delta_types")}: unknown delta type {show(delta_type)}; only "fossil"')
    if ok("delta_publish", "allowed_delta_types") and opts.delta_publish and not opts.allowed_delta_types:
        problems.append(f'{label("delta_publish")}: needs allowed_delta_types, e.g. ["fossil"]')
    if opts.channel_regex:
        try:
            re.compile(opts.channel_regex)
        except re.error as exc:
            problems.append(f"{label('channel_regex')}: invalid regular expression ({exc})")
    return opts


def parse_namespaces(
    value: Any, suffix: str, global_meta_ttl: float, global_meta_bad: bool, problems: list[str]
) -> dict[str, ChannelOptions]:
    """``namespaces``: a list of objects with ``name`` and channel options, kept in order."""
    if not isinstance(value, list):
        problems.append(
            f'namespaces{suffix}: must be a list of objects such as [{{"name": "chat"}}], got {show(value)}'
        )
        return {}
    result: dict[str, ChannelOptions] = {}
    first_index: dict[str, int] = {}
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            problems.append(f"namespaces[{index}]{suffix}: must be an object with a name, got {show(item)}")
            continue
        name = item.get("name")
        # json.dumps quotes the name and escapes control characters, so each problem stays one line.
        where = f" in namespace {quote(name)}" if isinstance(name, str) and name else f" in namespaces[{index}]"
        where += suffix
        name_ok = False
        if "name" not in item:
            problems.append(f"name{where}: required")
        elif not isinstance(name, str):
            problems.append(f"name{where}: must be a string, got {show(name)}")
        elif not NAMESPACE_NAME_RE.fullmatch(name):
            problems.append(
                f"name{where}: must be 2 or more letters, digits, '-', '_' or '.' "
                f"({NAMESPACE_NAME_RE.pattern}), got {show(name)}"
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
            kind = CHANNEL_KINDS.get(key)
            if kind is None:
                problems.append(unknown_key(f"{key}{where}", key, _NAMESPACE_KEYS))
                continue
            try:
                values[key] = convert(key, kind, raw)
            except Invalid as exc:
                problems.append(f"{key}{where}: {exc}")
                bad.add(key)
        opts = parse_channel_options(values, bad, _suffixed(where), global_meta_ttl, global_meta_bad, problems)
        if name_ok:
            assert isinstance(name, str)
            result[name] = opts
    return result


def _suffixed(where: str) -> Callable[[str], str]:
    return lambda key: f"{key}{where}"


def unknown_key(where: str, key: str, known: Sequence[str]) -> str:
    if key in _UNSUPPORTED:
        return f"{where}: a Centrifugo option Herald does not support; remove it"
    if key in SERVER_KINDS or key == "namespaces":
        return f"{where}: not a namespace option; set it at the top level"
    close = difflib.get_close_matches(key, known, n=1)
    return f'{where}: unknown key (did you mean "{close[0]}"?)' if close else f"{where}: unknown key"


def quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def format_seconds(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
