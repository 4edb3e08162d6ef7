"""Who the connection is: from the session cookie the gateway forwards (connect, refresh),
or from the ``user`` field the gateway vouches for (every later call, proxy spec §3).

The session is loaded the way ``SessionMiddleware`` and ``AuthenticationMiddleware`` do it:
the cookie named ``SESSION_COOKIE_NAME``, the configured ``SESSION_ENGINE``, and
``django.contrib.auth.get_user``, which also checks the session's password hash, so a
password change ends proxy-authenticated connections as it ends the user's sessions. Doing
it here, not relying on the middleware, keeps the views correct whatever the project's
middleware list is.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.http import HttpRequest


def session_key(request: HttpRequest) -> str | None:
    return request.COOKIES.get(settings.SESSION_COOKIE_NAME) or None


def session_user(request: HttpRequest) -> Any:
    """The user of the forwarded session cookie; AnonymousUser if none, expired or logged out."""
    key = session_key(request)
    if key is None:
        return AnonymousUser()
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(key)
    user = get_user(request)
    if not user.is_authenticated or not getattr(user, "is_active", True):
        return AnonymousUser()
    return user


def user_by_id(user_id: str) -> Any:
    """The user the gateway names (``""`` = anonymous); AnonymousUser if gone or inactive."""
    if not user_id:
        return AnonymousUser()
    model = get_user_model()
    try:
        user = model._default_manager.get(pk=user_id)
    # A pk that does not fit the field (ValueError for an int, ValidationError for a UUID).
    except (model.DoesNotExist, ValueError, TypeError, ValidationError):
        return AnonymousUser()
    if not getattr(user, "is_active", True):
        return AnonymousUser()
    return user
