"""``herald serve`` and ``herald check``: run the gateway, validate its configuration."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from herald.gateway.activation import ActivationError, inherited_listener
from herald.gateway.cli.common import SubParsers, load, port
from herald.gateway.config import worker_count, workers_problem


def _serve(args: argparse.Namespace) -> int:
    config = load(args.config)
    if config is None:
        return 1
    overrides: dict[str, object] = {}
    if args.port is not None:
        overrides["port"] = args.port
    if args.address is not None:
        overrides["address"] = args.address
    if args.workers is not None:
        overrides["workers"] = args.workers
    config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
    problem = workers_problem(config)
    if problem:
        print(f"error: workers: {problem}", file=sys.stderr)
        return 1
    try:
        listener = inherited_listener()
    except ActivationError as exc:
        print(f"error: socket activation: {exc}", file=sys.stderr)
        return 1
    if worker_count(config) > 1:
        from herald.gateway.workers import supervise

        return supervise(config, listener)
    from herald.gateway.app import run

    run(config, listener)
    return 0


def _check(args: argparse.Namespace) -> int:
    config = load(args.config)
    if config is None:
        return 1
    print(f"{args.config or 'defaults'}: configuration is valid")
    return 0


def _workers(value: str) -> int:
    if value == "auto":
        return 0
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'workers must be a number or "auto", got {value!r}') from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"workers must be 1 or more, got {count}")
    return count


def register(commands: SubParsers) -> None:
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="configuration file (JSON, TOML or YAML)")
    serve.add_argument("--port", type=port, help="listen port (overrides the config)")
    serve.add_argument("--address", help="listen address (overrides the config)")
    serve.add_argument(
        "--workers", type=_workers, help='worker processes, each a node: a number or "auto" (one per core)'
    )
    serve.set_defaults(func=_serve)

    check = commands.add_parser("check", help="validate a configuration and list every problem")
    check.add_argument("--config", help="configuration file")
    check.set_defaults(func=_check)
