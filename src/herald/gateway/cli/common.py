"""What every ``herald`` command shares: loading the configuration, reading arguments."""

from __future__ import annotations

import argparse
import sys
from typing import TypeAlias

from herald.gateway.config import Config, ConfigError, load_config


def load(path: str | None) -> Config | None:
    """The configuration from ``--config`` and ``HERALD_*``; None (problems printed) when unusable."""
    try:
        config, warnings = load_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        for line in exc.warnings:
            print(f"warning: {line}", file=sys.stderr)
        return None
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    return config


def port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {value!r}") from None
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, got {number}")
    return number


# The object ``add_subparsers`` returns, to which each command group adds its commands.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
