"""One log line per connect, per disconnect and per refused connection, with structured fields.

Lines go to the ``herald.connections`` logger at INFO with their fields passed as ``extra``
(see ``logs.py`` for how text and JSON lines show them):

* ``client connected``: ``event=connect``, ``user``, ``client`` (id), ``transport``.
* ``client disconnected``: the same, and ``code``, ``reason`` (the disconnect code the client
  was given, or 3000 "connection closed" when the client went away), ``duration`` (seconds
  since the connect), ``detail`` when there is more to say (why a refreshed token was refused).
* ``connection refused``: ``event=refused``, ``transport``, ``reason``, and either the
  ``client`` id and the protocol ``code`` (a refused connect: bad or expired token, connection
  limits, shutdown...) with a ``detail`` (why the token was refused), or the HTTP ``status``
  (an upgrade refused before any session: origin, connection rate, shutdown).

Only connections that completed a connect get a disconnect line; refusals get one line each
and never a traceback. No line carries a token, a key or a frame: ``detail`` is the token
verifier's own sentence, which never quotes the token (tests/gateway/test_secrets_in_logs.py).
Refusals are counted by a bounded reason (metrics ``herald_connections_refused_total``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

from herald.errors import Disconnect, ReplyError
from herald.gateway.codecs.messages import ConnectRequest
from herald.gateway.session import connecting

if TYPE_CHECKING:
    from herald.gateway.session.client import Client

log = logging.getLogger("herald.connections")

# Metric label of a refused connect, by the code it was refused with: a fixed set, so a proxy
# or a future error cannot add label values.
REFUSAL_REASONS: Final[dict[int, str]] = {
    3500: "invalid_token",
    109: "token_expired",
    110: "token_expired",
    3005: "token_expired",
    3504: "connection_limit",
    3505: "channel_limit",
    3501: "bad_request",
    107: "bad_request",
    3001: "shutdown",
    103: "permission_denied",
    3507: "permission_denied",
    102: "unknown_channel",
    111: "too_many_requests",
    3013: "too_many_requests",
}


def refusal_reason(code: int) -> str:
    return REFUSAL_REASONS.get(code, "other")


async def connect(client: Client, cmd_id: int, req: ConnectRequest) -> None:
    """``connect`` with its log line: connected, or refused with the reason."""
    try:
        await connecting.connect(client, cmd_id, req)
    except (ReplyError, Disconnect) as exc:
        refused(client, exc)
        raise
    if not client.closed:
        connected(client)


def connected(client: Client) -> None:
    client.connected_at = time.monotonic()
    log.info(
        "client connected",
        extra={"event": "connect", "user": client.user, "client": client.id, "transport": client.transport},
    )


def disconnected(client: Client, disconnect: Disconnect) -> None:
    fields: dict[str, Any] = {
        "event": "disconnect",
        "user": client.user,
        "client": client.id,
        "transport": client.transport,
        "code": disconnect.code,
        "reason": disconnect.reason,
        "duration": round(time.monotonic() - client.connected_at, 3),
    }
    if client.log_detail:
        fields["detail"] = client.log_detail
    log.info("client disconnected", extra=fields)


def refused(client: Client, error: ReplyError | Disconnect) -> None:
    code = error.code
    counters = client.node.counters
    counters.bump(counters.refused, refusal_reason(code))
    fields: dict[str, Any] = {
        "event": "refused",
        "client": client.id,
        "transport": client.transport,
        "code": code,
        "reason": error.message if isinstance(error, ReplyError) else error.reason,
    }
    if client.user:
        fields["user"] = client.user
    if client.log_detail:
        fields["detail"], client.log_detail = client.log_detail, ""
    log.info("connection refused", extra=fields)


def upgrade_refused(transport: str, status: int, reason: str) -> None:
    """An upgrade or stream request refused before any session exists (counted by the caller)."""
    log.info(
        "connection refused",
        extra={"event": "refused", "transport": transport, "status": status, "reason": reason},
    )
