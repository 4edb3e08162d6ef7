"""A logout anywhere ends the user's live connections (``REALTIME_DISCONNECT_ON_LOGOUT``).

On ``user_logged_out`` the user's connections are closed through the server API with 4001
"logged out", a reconnect code: the user's other pages, still logged in, come straight back
through the connect proxy with their own session, and the page whose session ended is
refused there (4501, no further retries). Connections made with a token reconnect with their
token; to shut those out too, call ``invalidate_user_tokens`` (revocation.py).

The call is made after the logout commits. If the gateway cannot be reached the logout still
succeeds (it must not fail because the gateway is down); the failure is logged, and the
refresh proxy ends the connection at its next refresh, when it finds the session gone.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from herald.django.conf import get_settings
from herald.django.proxy.errors import LOGGED_OUT

logger = logging.getLogger("herald.django.proxy")


def disconnect_on_logout(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    if user is None or getattr(user, "pk", None) is None or not get_settings().disconnect_on_logout:
        return
    user_id = str(user.pk)

    def disconnect() -> None:
        # Imported here: connecting the receiver at start-up must not load the HTTP client.
        from herald.apiclient import ApiError
        from herald.django.revocation import disconnect_user

        try:
            disconnect_user(user_id, code=LOGGED_OUT["code"], reason=LOGGED_OUT["reason"])
        except ApiError as exc:
            logger.warning("could not disconnect user %s after logout: %s", user_id, exc)

    transaction.on_commit(disconnect)
