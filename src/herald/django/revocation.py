"""Taking access away: call these when a user's grants shrink (left a tenant, was banned).

Tokens carry grants, and the gateway checks tokens without asking Django, so a token
minted before the change keeps the old grants until it expires. Revoking closes that gap
(decisions §3):

* ``invalidate_user_tokens(user_id)``: every token the user holds now is refused; live
  connections are closed with 3005, a reconnect code, and the SDK fetches a fresh token,
  which carries the user's *current* grants. The right call for "left a tenant".
* ``disconnect_user(user_id)``: closes the user's connections with 3503 ("force
  disconnect", no reconnect). For "banned" or "logged out everywhere"; the SDK stays
  disconnected until the page connects again.

Call them after the change commits (``transaction.on_commit``), or a client could fetch
its new token before the change is visible and get the old grants again. They raise
``herald.apiclient.ApiError`` on failure: a revocation that did not happen should not
pass silently.
"""

from __future__ import annotations

import time

from herald.django.conf import get_settings
from herald.django.publisher import get_client

# Tokens may be minted by a process whose clock runs slightly ahead; keep the rule a
# little longer than the longest token lifetime.
_CLOCK_SLACK_SECONDS = 60


def invalidate_user_tokens(user_id: object, *, expire_at: int | None = None) -> None:
    """Refuse every token of ``user_id`` issued up to now; the SDK fetches a new one."""
    settings = get_settings()
    issued_before = int(time.time()) + 1
    if expire_at is None:
        # No token issued before now outlives now + TTL, after which the rule is moot.
        expire_at = issued_before + settings.token_ttl_seconds + _CLOCK_SLACK_SECONDS
    get_client(settings).invalidate_user_tokens(str(user_id), issued_before=issued_before, expire_at=expire_at)


def revoke_token(jti: str, *, expire_at: int | None = None) -> None:
    """Refuse the one token whose ``jti`` is given (e.g. a leaked token)."""
    settings = get_settings()
    if expire_at is None:
        expire_at = int(time.time()) + settings.token_ttl_seconds + _CLOCK_SLACK_SECONDS
    get_client(settings).revoke_token(jti, expire_at=expire_at)


def disconnect_user(user_id: object, *, code: int | None = None, reason: str = "") -> None:
    """Close every connection of ``user_id`` (default 3503: the SDK does not reconnect)."""
    get_client().disconnect(str(user_id), code=code, reason=reason)
