"""``herald`` command line: serve, check, token."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from herald.gateway.activation import ActivationError, inherited_listener
from herald.gateway.config import Config, ConfigError, load_config, worker_count, workers_problem
from herald.tokens import mint_connection_token


def _load(path: str | None) -> Config | None:
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


def _serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
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
    config = _load(args.config)
    if config is None:
        return 1
    print(f"{args.config or 'defaults'}: configuration is valid")
    return 0


def _token(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    if not config.token_hmac_secret_key:
        print("error: token_hmac_secret_key is not set in the configuration", file=sys.stderr)
        return 1
    channels = [c.strip() for c in args.channels.split(",") if c.strip()] if args.channels else []
    info = None
    if args.info:
        try:
            info = json.loads(args.info)
        except json.JSONDecodeError as exc:
            print(f"error: --info is not valid JSON ({exc})", file=sys.stderr)
            return 1
    token = mint_connection_token(
        config.token_hmac_secret_key,
        args.user,
        channels=channels,
        ttl=args.ttl,
        info=info,
        audience=config.token_audience,
        issuer=config.token_issuer,
    )
    print(token)
    return 0


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, got {port}")
    return port


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


def _ttl(value: str) -> int:
    try:
        ttl = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"ttl must be whole seconds, got {value!r}") from None
    if ttl <= 0:
        raise argparse.ArgumentTypeError(f"ttl must be positive, got {ttl}")
    return ttl


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="herald", description="Herald real-time push gateway")
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="configuration file (JSON, TOML or YAML)")
    serve.add_argument("--port", type=_port, help="listen port (overrides the config)")
    serve.add_argument("--address", help="listen address (overrides the config)")
    serve.add_argument(
        "--workers", type=_workers, help='worker processes, each a node: a number or "auto" (one per core)'
    )
    serve.set_defaults(func=_serve)

    check = commands.add_parser("check", help="validate a configuration and list every problem")
    check.add_argument("--config", help="configuration file")
    check.set_defaults(func=_check)

    token = commands.add_parser("token", help="print a connection token signed with the config's HMAC secret")
    token.add_argument("--config", help="configuration file")
    token.add_argument("--user", required=True, help="user id (the sub claim)")
    token.add_argument("--channels", default="", help="comma-separated channel grants")
    token.add_argument("--ttl", type=_ttl, default=600, help="seconds until the token expires (default 600)")
    token.add_argument("--info", help="connection info as JSON")
    token.set_defaults(func=_token)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
