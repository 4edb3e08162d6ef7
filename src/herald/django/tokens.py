"""Connection and subscription tokens for Django users.

A connection token is an HS256 JWT with ``sub``, ``iat``, ``exp``, ``jti``, ``info``
(``name``, ``email``) and ``channels``: the exact, prefixed list of channels the user may
subscribe to (decisions §1). The gateway checks it without calling back here, so a token
is the user's grants as of the moment it was minted; keep its lifetime short
(``REALTIME_TOKEN_TTL_SECONDS``) and revoke when grants shrink (``revocation.py``).

Channels outside the grant list can be opened on demand with a subscription token, when
the ``REALTIME_SUBSCRIPTION_AUTHORIZER`` hook agrees.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

from herald.django.channels import AuthorizerHook, granted_channels, load_hook, with_prefix, without_prefix
from herald.django.conf import HeraldSettings, get_settings
from herald.tokens import mint_connection_token, mint_subscription_token


class RealtimeTokenService:
    """Mints tokens for authenticated users; subclass and override ``user_info`` to change ``info``."""

    def __init__(self, settings: HeraldSettings | None = None) -> None:
        self.settings = settings or get_settings()

    def generate_connection_token(self, user: Any) -> str:
        _require_authenticated(user)
        s = self.settings
        return mint_connection_token(
            s.hmac_secret,
            str(user.pk),
            channels=granted_channels(user, s),
            ttl=s.token_ttl_seconds,
            info=self.user_info(user),
            audience=s.token_audience,
            issuer=s.token_issuer,
        )

    def generate_subscription_token(self, user: Any, channel: str) -> str:
        """A token for one channel the connection token does not grant.

        ``channel`` is the name the client subscribes to (with or without the environment
        prefix). The authorizer hook sees it without the prefix, as the application names
        it. PermissionDenied if the hook refuses or the channel is another environment's.
        """
        _require_authenticated(user)
        s = self.settings
        try:
            full = with_prefix(channel, s.channel_prefix)
        except ValueError:
            raise PermissionDenied("invalid channel") from None
        app_name = without_prefix(full, s.channel_prefix)
        authorizer: AuthorizerHook = load_hook(s.subscription_authorizer)
        if app_name is None or authorizer(user, app_name) is not True:
            raise PermissionDenied("permission denied")
        return mint_subscription_token(
            s.hmac_secret,
            str(user.pk),
            full,
            ttl=s.token_ttl_seconds,
            audience=s.token_audience,
            issuer=s.token_issuer,
        )

    def user_info(self, user: Any) -> dict[str, str]:
        """Public connection info shown to other clients (presence, join/leave): keep it small."""
        get_full_name = getattr(user, "get_full_name", None)
        name = get_full_name() if callable(get_full_name) else ""
        if not name:
            name = user.get_username()
        email = getattr(user, "email", "") or ""
        return {"name": str(name), "email": str(email)}


def _require_authenticated(user: Any) -> None:
    # Anonymous users have no pk; a token for "" would be an anonymous connection token.
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        raise PermissionDenied("authentication required")
