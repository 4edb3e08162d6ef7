"""What every ``herald`` command shares: loading the configuration, reading arguments."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import TypeAlias

from herald.gateway.config import Config, ConfigError, parse_config, read_config_file
from herald.gateway.config import v6 as config_v6

# The object ``add_subparsers`` returns, to which each command group adds its commands.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

CONFIG_HELP = "configuration file (JSON, TOML or YAML; Centrifugo v5 or v6 keys); HERALD_<KEY> variables override it"


@dataclass(frozen=True, slots=True)
class Loaded:
    config: Config
    warnings: list[str]
    #: What was read, in words: "herald.toml: read a Centrifugo v6 configuration (nested sections)"
    source: str


def load_with_details(path: str | None, *, warn: bool = True) -> Loaded | None:
    """The configuration from ``--config`` and ``HERALD_*`` (the gateway's own loader); None,
    with every problem printed, when it is unusable. ``warn`` prints the warnings too: they
    are about serving, so the commands that only talk to a gateway leave them out."""
    try:
        data = {} if path is None else read_config_file(path)
        config, warnings = parse_config(data)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        for line in exc.warnings:
            print(f"warning: {line}", file=sys.stderr)
        return None
    if warn:
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
    if path is None:
        source = "no --config given: read the defaults and HERALD_* environment variables"
    elif config_v6.is_v6(data):
        source = f"{path}: read a Centrifugo v6 configuration (nested sections)"
    else:
        source = f"{path}: read a Centrifugo v5 configuration (flat keys)"
    return Loaded(config, warnings, source)


def load(path: str | None, *, warn: bool = True) -> Config | None:
    loaded = load_with_details(path, warn=warn)
    return None if loaded is None else loaded.config


def fail(message: str) -> int:
    """Print one problem in words; the exit status of a command that could not do its job."""
    print(f"error: {message}", file=sys.stderr)
    return 1


def not_set(key: str, path: str | None, variable: str, why: str = "") -> int:
    """A key the command needs is empty: say where it goes (exit status 1)."""
    where = f"in {path}" if path else "(no --config given)"
    return fail(f"{key} is not set {where}{why}: pass --config FILE with it, or set {variable}")


def port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {value!r}") from None
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, got {number}")
    return number


def positive_seconds(value: str) -> int:
    """A token lifetime: whole seconds, more than zero."""
    try:
        ttl = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"ttl must be whole seconds, got {value!r}") from None
    if ttl <= 0:
        raise argparse.ArgumentTypeError(f"ttl must be positive, got {ttl}")
    return ttl
