"""``herald token``: a connection token signed with the configuration's HMAC secret."""

from __future__ import annotations

import argparse
import json

from herald.gateway.cli.common import CONFIG_HELP, SubParsers, fail, load, not_set, positive_seconds
from herald.tokens import mint_connection_token


def _token(args: argparse.Namespace) -> int:
    config = load(args.config, warn=False)
    if config is None:
        return 1
    if not config.token_hmac_secret_key:
        return not_set("token_hmac_secret_key", args.config, "HERALD_TOKEN_HMAC_SECRET_KEY")
    channels = [c.strip() for c in args.channels.split(",") if c.strip()] if args.channels else []
    info = None
    if args.info:
        try:
            info = json.loads(args.info)
        except json.JSONDecodeError as exc:
            return fail(f"--info is not valid JSON ({exc})")
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


def register(commands: SubParsers) -> None:
    token = commands.add_parser("token", help="print a connection token signed with the config's HMAC secret")
    token.add_argument("--config", help=CONFIG_HELP)
    token.add_argument("--user", required=True, help="user id (the sub claim)")
    token.add_argument("--channels", default="", help="comma-separated channel grants")
    token.add_argument(
        "--ttl", type=positive_seconds, default=600, help="seconds until the token expires (default 600)"
    )
    token.add_argument("--info", help="connection info as JSON")
    token.set_defaults(func=_token)
