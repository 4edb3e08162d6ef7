"""``herald serve`` and ``herald check``: run the gateway, validate its configuration."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from herald.gateway.activation import ActivationError, inherited_listener
from herald.gateway.cli.common import CONFIG_HELP, SubParsers, fail, load_with_details, port
from herald.gateway.config import Config, no_client_can_connect, worker_count, workers_problem


def _serve(args: argparse.Namespace) -> int:
    loaded = load_with_details(args.config, warn=False)
    if loaded is None:
        return 1
    config = loaded.config
    overrides: dict[str, object] = {}
    if args.port is not None:
        overrides["port"] = args.port
    if args.address is not None:
        overrides["address"] = args.address
    if args.workers is not None:
        overrides["workers"] = args.workers
    config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
    _warn(config, loaded.warnings)
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


def _warn(config: Config, warnings: list[str]) -> None:
    """The configuration's warnings: log lines when the log is JSON (every line of it must
    parse, docs/operations.md "Logs"), plain ``warning:`` lines otherwise."""
    if config.log_format != "json":
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
        return
    from herald.gateway.app import configure_logging

    configure_logging(config)
    for line in warnings:
        logging.getLogger("herald.config").warning("%s", line)


def _check(args: argparse.Namespace) -> int:
    """Validate, and say whether the gateway could serve anyone with this configuration.

    A config that parses but verifies no token and admits no anonymous client fails the
    check (exit 1): ``serve`` would start, and every connection would be refused.
    """
    name = args.config or "defaults"
    loaded = load_with_details(args.config)
    if loaded is None:
        return 1
    print(loaded.source)
    if no_client_can_connect(loaded.config):
        return fail(
            f"{name}: no client could connect (see the warning above): pass --config FILE with "
            "token_hmac_secret_key, or set HERALD_TOKEN_HMAC_SECRET_KEY"
        )
    count = len(loaded.warnings)
    print(f"{name}: configuration is valid" + (f" ({count} warning{'s' if count > 1 else ''} above)" if count else ""))
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
    serve.add_argument("--config", help=CONFIG_HELP)
    serve.add_argument("--port", type=port, help="listen port (overrides the config)")
    serve.add_argument("--address", help="listen address (overrides the config)")
    serve.add_argument(
        "--workers", type=_workers, help='worker processes, each a node: a number or "auto" (one per core)'
    )
    serve.set_defaults(func=_serve)

    check = commands.add_parser("check", help="validate a configuration and list every problem")
    check.add_argument("--config", help=CONFIG_HELP)
    check.set_defaults(func=_check)
