"""Rules across keys (the server section): secrets, limits, handler paths, proxies, personal channels."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

from herald.gateway.admin.checks import check_admin
from herald.gateway.config.deployment import check_redis, workers_problem
from herald.gateway.config.model import (
    MIN_API_KEY_BYTES,
    MIN_HMAC_SECRET_BYTES,
    NAMESPACE_NAME_RE,
    PROXY_KINDS,
    ChannelOptions,
    Config,
)
from herald.gateway.config.values import format_seconds, quote, show
from herald.tokens import load_public_key


def check_server(
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
            f"({format_seconds(config.ping_interval)}), got {format_seconds(config.pong_timeout)}; "
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
            f"{label('shutdown_drain_window')}: {format_seconds(config.shutdown_drain_window)} does not fit inside "
            f"shutdown_timeout ({format_seconds(config.shutdown_timeout)}); connections still open when the "
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
            problems.append(f"{label(key)}: must start with '/', got {show(getattr(config, key))}")
        elif path in seen:
            problems.append(f"{label(key)}: the same path as {seen[path]} ({show(path)})")
        else:
            seen[path] = key
    if "workers" not in bad and "engine" not in bad and (problem := workers_problem(config)):
        problems.append(f"{label('workers')}: {problem}")
    check_redis(config, bad, label, problems, warnings)
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


_HEADER_NAME_RE: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110 §5.1)


def _url_problem(url: str) -> str | None:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        why = " (GRPC proxies are not supported)" if scheme.lower() == "grpc" else ""
        return f"must be an http:// or https:// URL{why}, got {show(url)}"
    if not rest or rest.startswith(("/", "?", "#")):
        return f"the URL has no host, got {show(url)}"
    if any(c.isspace() for c in url):
        return f"the URL must not contain spaces, got {show(url)}"
    return None


def _headers_problems(key: str, names: Sequence[str], static: Sequence[tuple[str, str]]) -> list[str]:
    problems = [
        f"{key}: {show(name)} is not a valid HTTP header name" for name in names if not _HEADER_NAME_RE.fullmatch(name)
    ]
    for name, value in static:
        if not _HEADER_NAME_RE.fullmatch(name):
            problems.append(f"{key}: {show(name)} is not a valid HTTP header name")
        if "\r" in value or "\n" in value:
            problems.append(f"{key}: the value of {show(name)} must be one line")
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
    scopes = [("", config.channel_options), *((f" in namespace {quote(n)}", o) for n, o in config.namespaces.items())]
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
        where = f"{label('proxies')}: item {i} ({show(proxy.name)})"
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
            problems.append(f"{key}: no proxy named {show(name)} in proxies")

    for key in ("connect_proxy_name", "refresh_proxy_name", "rpc_proxy_name"):
        check_name(label(key), getattr(config, key))
    for where, opts in scopes:
        for kind in ("subscribe", "publish", "sub_refresh"):
            check_name(f"{kind}_proxy_name{where}", getattr(opts, f"{kind}_proxy_name"))
            if getattr(opts, f"proxy_{kind}"):
                problems.append(f"proxy_{kind}{where}: not used in granular_proxy_mode; set {kind}_proxy_name")
    seen: set[str] = set()
    for i, ns in enumerate(config.rpc_namespaces):
        where = f"{label('rpc_namespaces')}: item {i} ({show(ns.name)})"
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
        problems.append(f"{label('user_personal_channel_namespace')}: no namespace named {show(ns)} is configured")
    if config.user_personal_single_connection and not config.user_subscribe_to_personal:
        problems.append(f"{label('user_personal_single_connection')}: needs user_subscribe_to_personal: true")
