"""The ``herald`` command line: one module per command group, each adding its subcommands.

server.py     serve, check          genconfig.py  genconfig
tokens.py     token                 api.py        publish, info, disconnect
tail.py       tail
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from herald.gateway.cli import api, genconfig, server, tail, tokens


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="herald", description="Herald real-time push gateway")
    commands = root.add_subparsers(dest="command", required=True)
    for group in (server, genconfig, tokens, api, tail):
        group.register(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code
