"""``herald genconfig``: a commented starter configuration with fresh random credentials.

TOML, because it is the format Herald reads that allows comments (JSON does not, and YAML
needs PyYAML); the same keys as JSON, in Centrifugo v5 flat form or v6 sections (spec §10).
The HMAC secret and the API key come from ``secrets``: 48 random bytes each, well over the
32 bytes decisions §4 asks of a secret, so ``herald check`` passes on the file as written.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from herald.gateway.cli.common import SubParsers, fail

_RANDOM_BYTES = 48  # base64url: 64 characters

_HEADER = """\
# Herald configuration{source}.
# {layout} Every key: docs/configuration.md.
# Check it:   herald check --config {name}
# Run it:     herald serve --config {name}
# A variable HERALD_<KEY> overrides any key, e.g. HERALD_PORT=9000.
# The secret and the API key below are random and unique to this file: keep it private (mode 600).
"""

_V5 = """\

# Browsers connect to ws://<host>:<port>/connection/websocket; your backend publishes
# to http://<host>:<port>/api (keep that path off the public side of your proxy).
address = "0.0.0.0"
port = 8000
log_level = "info"

# Connection tokens are JWTs (HS256) signed with this secret: share it only with the
# backend that mints them (Django: REALTIME_HMAC_SECRET).
token_hmac_secret_key = "{secret}"

# The server API key: your backend sends it as the X-API-Key header (Django: REALTIME_API_KEY).
api_key = "{api_key}"

# Origins whose pages may open a WebSocket; glob patterns allowed ("https://*.example.com").
# Empty: only clients that send no Origin header, i.e. no browsers.
allowed_origins = ["http://localhost:8000"]

# One node keeps everything in memory. For several nodes (or --workers), use Redis:
# engine = "redis"
# redis_address = ["redis://127.0.0.1:6379"]
engine = "memory"

# On SIGTERM, connections are closed over this window so that clients do not all
# reconnect at once; shutdown_timeout bounds the whole shutdown.
shutdown_drain_window = "5s"
shutdown_timeout = "30s"

# Channels "critical:<name>" keep their last 50 publications for 2 minutes: a client that
# reconnects recovers what it missed. Channels without a namespace keep nothing.
[[namespaces]]
name = "critical"
history_size = 50
history_ttl = "120s"
force_recovery = true
"""

_V6 = """\

# Browsers connect to ws://<host>:<port>/connection/websocket; your backend publishes
# to http://<host>:<port>/api (keep that path off the public side of your proxy).
[http_server]
address = "0.0.0.0"
port = 8000

[log]
level = "info"

[client]
# Origins whose pages may open a WebSocket; glob patterns allowed ("https://*.example.com").
# Empty: only clients that send no Origin header, i.e. no browsers.
allowed_origins = ["http://localhost:8000"]

[client.token]
# Connection tokens are JWTs (HS256) signed with this secret: share it only with the
# backend that mints them (Django: REALTIME_HMAC_SECRET).
hmac_secret_key = "{secret}"

[http_api]
# The server API key: your backend sends it as the X-API-Key header (Django: REALTIME_API_KEY).
key = "{api_key}"

[engine]
# One node keeps everything in memory. For several nodes (or --workers), use Redis:
# type = "redis"
# redis.address = ["redis://127.0.0.1:6379"]
type = "memory"

[shutdown]
# On SIGTERM, connections are closed over drain_window so that clients do not all
# reconnect at once; timeout bounds the whole shutdown.
drain_window = "5s"
timeout = "30s"

# Channels "critical:<name>" keep their last 50 publications for 2 minutes: a client that
# reconnects recovers what it missed. Channels without a namespace keep nothing.
[[channel.namespaces]]
name = "critical"
history_size = 50
history_ttl = "120s"
force_recovery = true
"""


def render(layout: str, name: str = "herald.toml", source: str = "") -> str:
    """A starter configuration in ``layout`` ("v5" or "v6"), with fresh random credentials."""
    header = _HEADER.format(
        source=source,
        name=name,
        layout="Centrifugo v5 flat keys." if layout == "v5" else "Centrifugo v6 sections.",
    )
    body = _V5 if layout == "v5" else _V6
    return header + body.format(
        secret=secrets.token_urlsafe(_RANDOM_BYTES), api_key=secrets.token_urlsafe(_RANDOM_BYTES)
    )


def _genconfig(args: argparse.Namespace) -> int:
    if args.output is None:
        sys.stdout.write(render(args.format))
        return 0
    path = Path(args.output)
    if path.suffix.lower() != ".toml":
        # Herald picks the parser by the suffix: anything else would be read as JSON.
        return fail(f"{path}: genconfig writes TOML (JSON has no comments); name the file *.toml")
    if path.exists() and not args.force:
        return fail(f"{path} already exists; pass --force to overwrite it")
    text = render(args.format, name=str(path), source=" (herald genconfig)")
    try:
        # 0600 from the start: the file holds the token secret and the API key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an overwritten file keeps its mode otherwise
        with os.fdopen(fd, "w") as out:
            out.write(text)
    except OSError as exc:
        return fail(f"{path}: cannot write: {exc.strerror or exc}")
    print(f"wrote {path}; check it with: herald check --config {path}", file=sys.stderr)
    return 0


def register(commands: SubParsers) -> None:
    gen = commands.add_parser(
        "genconfig", help="write a commented starter configuration (TOML) with a random secret and API key"
    )
    gen.add_argument("--output", "-o", help="file to write (*.toml); default: standard output")
    gen.add_argument(
        "--format", choices=("v5", "v6"), default="v5", help="Centrifugo v5 flat keys (default) or v6 sections"
    )
    gen.add_argument("--force", action="store_true", help="overwrite an existing file")
    gen.set_defaults(func=_genconfig)
