"""Calling the proxy views as the gateway does: POST, JSON body, the shared-secret header,
and the browser's session cookie forwarded in ``Cookie`` (proxy spec §2)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.test import Client

from tests.django_app.models import User
from tests.django_app.settings import TEST_PROXY_SECRET

SECRET_HEADER = "HTTP_X_REALTIME_PROXY_SECRET"


def gateway_call(
    event: str,
    body: dict[str, Any] | None = None,
    *,
    cookie: str | None = None,
    secret: str | None = TEST_PROXY_SECRET,
    raw: bytes | None = None,
    method: str = "post",
) -> Any:
    """The response of ``/realtime/proxy/<event>/``; a fresh client each time, like the gateway
    (no cookies of its own, CSRF enforced as for any other caller)."""
    client = Client(enforce_csrf_checks=True)
    extra: dict[str, str] = {}
    if secret is not None:
        extra[SECRET_HEADER] = secret
    if cookie is not None:
        extra["HTTP_COOKIE"] = cookie
    common = {"client": "c0ffee00-0000-4000-8000-000000000001", "transport": "websocket", "protocol": "json"}
    payload = raw if raw is not None else json.dumps({**common, "encoding": "json", **(body or {})}).encode()
    url = f"/realtime/proxy/{event}/"
    if method == "get":
        return client.get(url, **extra)
    return client.post(url, payload, content_type="application/json", **extra)


def answer(event: str, body: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """The JSON of a 200 answer."""
    response = gateway_call(event, body, **kwargs)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    decoded: dict[str, Any] = response.json()
    return decoded


def session_cookie(user: User) -> str:
    """A ``Cookie`` header carrying a real logged-in session of ``user`` (as a browser would)."""
    return logged_in_browser(user)[1]


def logged_in_browser(user: User) -> tuple[Client, str]:
    """A browser logged in as ``user`` (password "pw") and the ``Cookie`` header it sends."""
    browser = Client()
    assert browser.login(username=user.get_username(), password="pw")
    return browser, f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
