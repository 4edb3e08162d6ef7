"""Workers and Redis addresses: how many processes, and the servers the engine talks to."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from herald.gateway.config.model import PORT_RANGE, Config
from herald.gateway.config.values import show

_REDIS_SCHEMES: Final = ("redis", "rediss", "unix")


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
    if not sep or not host or not port.isdigit() or not PORT_RANGE[0] <= int(port) <= PORT_RANGE[1]:
        raise ValueError(f"must be host:port, got {show(text)}")
    return host, int(port)


def redis_url(address: str) -> str:
    """A ``redis_address`` item as a URL: ``host:port`` means ``redis://host:port``."""
    scheme, sep, rest = address.partition("://")
    if sep:
        if scheme not in _REDIS_SCHEMES:
            shown = f"{scheme}://***@{rest.rsplit('@', 1)[1]}" if "@" in rest else address  # no password
            raise ValueError(f"must be a redis://, rediss:// or unix:// URL or host:port, got {show(shown)}")
        return address
    host, port = split_host_port(address)
    return f"redis://[{host}]:{port}" if ":" in host else f"redis://{host}:{port}"


def cluster_seeds(element: str) -> list[tuple[str, int]]:
    """One ``redis_cluster_address`` element: comma-separated ``host:port`` seed nodes."""
    seeds = [split_host_port(seed) for seed in element.split(",") if seed.strip()]
    if not seeds:
        raise ValueError(f"must list at least one host:port seed node, got {show(element)}")
    return seeds


def check_redis(
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
