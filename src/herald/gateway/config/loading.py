"""From a file or a mapping (v5 flat keys or a v6 file) and ``HERALD_*`` variables to a ``Config``."""

from __future__ import annotations

import importlib
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from herald.gateway.config import v6 as config_v6
from herald.gateway.config.checks import check_server
from herald.gateway.config.model import ENV_PREFIX, ChannelOptions, Config
from herald.gateway.config.values import (
    CHANNEL_KINDS,
    SERVER_KINDS,
    TOP_LEVEL_KEYS,
    ConfigError,
    Invalid,
    convert,
    from_env,
    parse_channel_options,
    parse_namespaces,
    unknown_key,
)


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
        data, v6_problems = config_v6.flatten(data, CHANNEL_KINDS)
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
        kind = SERVER_KINDS.get(key) or CHANNEL_KINDS.get(key)
        if kind is None:
            problems.append(unknown_key(label(key), key, TOP_LEVEL_KEYS))
            continue
        try:
            converted = convert(key, kind, value)
        except Invalid as exc:
            problems.append(f"{label(key)}: {exc}")
            bad.add(key)
            continue
        (server if key in SERVER_KINDS else channel)[key] = converted

    config = Config(**server)
    global_meta_bad = "global_history_meta_ttl" in bad
    top = parse_channel_options(channel, bad, label, config.global_history_meta_ttl, global_meta_bad, problems)
    namespaces: dict[str, ChannelOptions] = {}
    if "namespaces" in merged and "namespaces" not in bad:
        suffix = f" (from {origin['namespaces']})" if "namespaces" in origin else ""
        namespaces = parse_namespaces(
            merged["namespaces"], suffix, config.global_history_meta_ttl, global_meta_bad, problems
        )
    config = replace(config, channel_options=top, namespaces=namespaces)
    check_server(config, bad, label, problems, warnings)
    if v6:  # name keys as the file spells them
        problems = [*v6_problems, *config_v6.relabel(problems, CHANNEL_KINDS)]
        warnings = config_v6.relabel(warnings, CHANNEL_KINDS)
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
        kind = "namespaces" if key == "namespaces" else SERVER_KINDS.get(key) or CHANNEL_KINDS.get(key)
        if kind is None:
            # Only a warning: the environment legitimately holds other HERALD_* variables.
            warnings.append(f"{var}: environment variable matches no configuration key; ignored")
            continue
        origin[key] = var
        try:
            merged[key] = from_env(kind, environ[var], key)
        except Invalid as exc:
            problems.append(f"{key} (from {var}): {exc}")
            merged.pop(key, None)
            bad.add(key)
    return bad
