"""``herald publish``, ``herald info`` and ``herald disconnect``: the server HTTP API (spec §8)
from a shell, with the API key and address of the same configuration the gateway reads.

The API URL is derived from the config (``address``, ``port``, ``api_handler_prefix``; a
wildcard address means this machine) unless ``--api`` names another gateway. Failures are
said in words, one line, with exit status 1: the gateway cannot be reached, the key was
refused, or the API answered with an error code (spec §8.1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from herald.aioapiclient import AsyncApiClient
from herald.apiresults import ApiError
from herald.gateway.cli.common import CONFIG_HELP, SubParsers, fail, load, not_set
from herald.gateway.config import Config

T = TypeVar("T")
_TIMEOUT = 10.0
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def local_base_url(config: Config, scheme: str = "http") -> str:
    """``scheme://host:port`` of the gateway this config describes, seen from this machine."""
    host = _WILDCARDS.get(config.address, config.address)
    return f"{scheme}://[{host}]:{config.port}" if ":" in host else f"{scheme}://{host}:{config.port}"


def _api_url(config: Config, override: str | None) -> str:
    return (override or local_base_url(config) + config.api_handler_prefix).rstrip("/")


def _run(args: argparse.Namespace, call: Callable[[AsyncApiClient], Awaitable[T]]) -> tuple[T | None, int]:
    """Load the config, call the API once; (result, 0) or (None, exit status) with the problem printed."""
    config = load(args.config, warn=False)
    if config is None:
        return None, 1
    url = _api_url(config, args.api)
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        return None, fail(f"--api must be an http:// or https:// URL such as http://127.0.0.1:8000/api, got {url!r}")
    if not config.api_key and not config.api_insecure:
        return None, not_set("api_key", args.config, "HERALD_API_KEY")

    async def once() -> T:
        async with AsyncApiClient(url, config.api_key, timeout=_TIMEOUT) as client:
            return await call(client)

    try:
        return asyncio.run(once()), 0
    except ApiError as exc:
        return None, fail(_in_words(exc, url))


def _in_words(exc: ApiError, url: str) -> str:
    if exc.status is None and exc.code is None and exc.transient:
        return f"cannot reach the gateway at {url}: {exc.reason}"
    if exc.status == 401:
        return f"the gateway at {url} refused the API key (HTTP 401): is it the gateway's api_key?"
    return f"{exc.method} at {url}: {exc.reason}"


def _publish(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.data == "-" else args.data
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return fail(f"the data to publish is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    result, status = _run(
        args,
        lambda client: client.publish(
            args.channel, data, idempotency_key=args.idempotency_key, skip_history=args.skip_history
        ),
    )
    if result is not None:
        print(json.dumps(result))
    return status


def _info(args: argparse.Namespace) -> int:
    result, status = _run(args, lambda client: client.info())
    if result is None:
        return status
    if args.json:
        print(json.dumps(result))
        return 0
    nodes: list[dict[str, Any]] = result.get("nodes") or []
    columns = ("name", "num_clients", "num_users", "num_channels", "num_subs", "uptime", "version")
    rows: list[list[str]] = [["NODE", "CLIENTS", "USERS", "CHANNELS", "SUBS", "UPTIME", "VERSION"]]
    for node in nodes:  # counts and uptime are left out by the API when zero (spec §8.2)
        rows.append([str(node.get(c, "" if c in ("name", "version") else 0)) for c in columns])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    totals = {c: sum(int(node.get(c, 0)) for node in nodes) for c in columns[1:5]}
    print(
        f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}: {totals['num_clients']} clients, "
        f"{totals['num_users']} users, {totals['num_subs']} subscriptions"
    )
    return 0


def _disconnect(args: argparse.Namespace) -> int:
    if args.reason and args.code is None:
        return fail("--reason needs --code")
    _, status = _run(
        args,
        lambda client: client.disconnect(
            args.user, client=args.client or "", code=args.code, reason=args.reason or "disconnected by an operator"
        ),
    )
    if status == 0:
        target = (
            f"connection {args.client} of user {args.user!r}"
            if args.client
            else f"every connection of user {args.user!r}"
        )
        print(f"disconnected {target}")
    return status


def _code(value: str) -> int:
    try:
        code = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"code must be a number, got {value!r}") from None
    # Disconnect codes live in 3000-4999 (spec §5.3); lower ones are WebSocket's own.
    if not 3000 <= code <= 4999:
        raise argparse.ArgumentTypeError(f"code must be between 3000 and 4999, got {code}")
    return code


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", help=CONFIG_HELP)
    command.add_argument(
        "--api", help="server API URL (default: from the config's address, port and api_handler_prefix)"
    )


def register(commands: SubParsers) -> None:
    publish = commands.add_parser("publish", help="publish JSON into a channel through the server API")
    publish.add_argument("channel", help="channel name, e.g. critical:tenant_42")
    publish.add_argument("data", metavar="JSON", help="the publication's data as JSON; - reads it from standard input")
    publish.add_argument("--idempotency-key", help="publish at most once for this key (5 minutes, per channel)")
    publish.add_argument("--skip-history", action="store_true", help="do not add it to the channel's history")
    _common(publish)
    publish.set_defaults(func=_publish)

    info = commands.add_parser("info", help="the gateway's nodes and their clients, users, channels and subscriptions")
    info.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    _common(info)
    info.set_defaults(func=_info)

    disconnect = commands.add_parser("disconnect", help="close a user's connections (default code 3503: no reconnect)")
    disconnect.add_argument("user", help="user id (the token's sub claim)")
    disconnect.add_argument("--client", help="only this connection (client id)")
    disconnect.add_argument("--code", type=_code, help="disconnect code, 3000-4999 (below 3500: the client reconnects)")
    disconnect.add_argument("--reason", help="disconnect reason sent with --code")
    _common(disconnect)
    disconnect.set_defaults(func=_disconnect)
