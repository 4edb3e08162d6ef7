"""Typed, frozen gateway settings, namespace resolution and config parsing (spec §7, §10.1; decisions §7).

Keys are Centrifugo v5 flat keys so an existing Centrifugo config block works as is (a
Centrifugo v6 file is flattened to them first, ``v6.py``). Durations are held as float seconds.

Parsing is table-driven: the kind of every key (bool, int, str, number, duration, list of
strings) comes from the dataclass annotations in ``model.py`` plus the explicit duration set in
``values.py``, so a new field is validated as soon as it is declared. Every problem is
collected, one line each naming the key (and the namespace), and reported together; nothing
unknown is ignored silently. ``checks.py`` holds the rules across keys, ``deployment.py`` the
workers and Redis addresses, ``loading.py`` the way from a file and ``HERALD_*`` to a Config.
"""

from herald.gateway.config.checks import no_client_can_connect
from herald.gateway.config.deployment import cluster_seeds, redis_url, split_host_port, worker_count, workers_problem
from herald.gateway.config.loading import load_config, parse_config, read_config_file
from herald.gateway.config.model import (
    DELTA_TYPES,
    ENV_PREFIX,
    MIN_API_KEY_BYTES,
    MIN_HMAC_SECRET_BYTES,
    NAMESPACE_NAME_RE,
    PROXY_KINDS,
    ChannelOptions,
    Config,
    ProxySettings,
    RpcNamespace,
    ScopedKey,
)
from herald.gateway.config.values import DURATIONS, ConfigError

__all__ = [
    "DELTA_TYPES",
    "DURATIONS",
    "ENV_PREFIX",
    "MIN_API_KEY_BYTES",
    "MIN_HMAC_SECRET_BYTES",
    "NAMESPACE_NAME_RE",
    "PROXY_KINDS",
    "ChannelOptions",
    "Config",
    "ConfigError",
    "ProxySettings",
    "RpcNamespace",
    "ScopedKey",
    "cluster_seeds",
    "load_config",
    "no_client_can_connect",
    "parse_config",
    "read_config_file",
    "redis_url",
    "split_host_port",
    "worker_count",
    "workers_problem",
]
