"""System checks of proxy mode (ids continue checks.py's table).

| id | problem |
|---|---|
| herald.E019 | the proxy URLs are installed and REALTIME_PROXY_SECRET is not set |
| herald.E020 | REALTIME_PROXY_SECRET shorter than 32 bytes |
| herald.E021 | REALTIME_PROXY_SECRET_HEADER not a header name |
| herald.E022 | REALTIME_PROXY_CONNECTION_TTL_SECONDS neither 0 nor a lifetime in range |
| herald.E023 | REALTIME_PROXY_SUBSCRIPTION_TTL_SECONDS neither 0 nor a lifetime in range |
| herald.E024 | REALTIME_DISCONNECT_ON_LOGOUT not a bool |
| herald.E025 | the proxy URLs are installed without django.contrib.auth / django.contrib.sessions |
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from django.apps import AppConfig, apps
from django.core.checks import CheckMessage, Error
from django.urls import NoReverseMatch, reverse

from herald.django import conf

# RFC 9110 token characters.
_HEADER_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def proxy_urls_installed() -> bool:
    try:
        reverse("herald_proxy:connect")
    except NoReverseMatch:
        return False
    except Exception:  # a broken URLconf is Django's own check to report
        return False
    return True


def check_proxy_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    installed = proxy_urls_installed()
    messages += _secret(installed)
    header = conf.raw("REALTIME_PROXY_SECRET_HEADER")
    if not isinstance(header, str) or not _HEADER_RE.match(header):
        messages.append(
            Error(
                f"REALTIME_PROXY_SECRET_HEADER must be an HTTP header name, not {header!r}.",
                hint="The default is 'X-Realtime-Proxy-Secret'; the gateway sends it from proxy_static_http_headers.",
                id="herald.E021",
            )
        )
    messages += _ttl("REALTIME_PROXY_CONNECTION_TTL_SECONDS", "herald.E022", "connect result's expire_at")
    messages += _ttl("REALTIME_PROXY_SUBSCRIPTION_TTL_SECONDS", "herald.E023", "subscribe result's expire_at")
    if not isinstance(conf.raw("REALTIME_DISCONNECT_ON_LOGOUT"), bool):
        messages.append(
            Error(
                "REALTIME_DISCONNECT_ON_LOGOUT must be True or False.",
                hint="True (the default) closes a user's live connections when they log out.",
                id="herald.E024",
            )
        )
    if installed:
        missing = [app for app in ("django.contrib.auth", "django.contrib.sessions") if not apps.is_installed(app)]
        if missing:
            messages.append(
                Error(
                    f"The proxy URLs authenticate connections by session, but {', '.join(missing)} is not installed.",
                    hint="Add it to INSTALLED_APPS, or remove herald.django.proxy.urls.",
                    id="herald.E025",
                )
            )
    return messages


def _secret(installed: bool) -> list[CheckMessage]:
    secret = conf.raw("REALTIME_PROXY_SECRET")
    if not isinstance(secret, str) or not secret:
        if not installed:
            return []
        return [
            Error(
                "herald.django.proxy.urls is installed but REALTIME_PROXY_SECRET is not set: "
                "every proxy call is refused.",
                hint="Set it from the environment, and give the gateway the same value in "
                'proxy_static_http_headers: {"X-Realtime-Proxy-Secret": "..."}.',
                id="herald.E019",
            )
        ]
    if len(secret.encode()) < conf.MIN_SECRET_BYTES:
        return [
            Error(
                f"REALTIME_PROXY_SECRET is {len(secret.encode())} bytes long; "
                f"at least {conf.MIN_SECRET_BYTES} are needed.",
                hint="Whoever guesses it can answer as any user's connect, or call the proxy views as any user. "
                'Generate one: python -c "import secrets; print(secrets.token_urlsafe(48))".',
                id="herald.E020",
            )
        ]
    return []


def _ttl(name: str, check_id: str, what: str) -> list[CheckMessage]:
    ttl = conf.raw(name)
    low, high = conf.PROXY_TTL_RANGE
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not (ttl == 0 or low <= ttl <= high):
        return [
            Error(
                f"{name} must be 0 or a whole number of seconds between {low} and {high}, not {ttl!r}.",
                hint=f"It sets the {what}; 0 leaves it out (no expiry, no refresh calls).",
                id=check_id,
            )
        ]
    return []
