"""System checks for the ``REALTIME_*`` settings; each problem has a stable id and a hint.

| id | setting |
|---|---|
| herald.E001 | REALTIME_HMAC_SECRET missing |
| herald.E002 | REALTIME_HMAC_SECRET shorter than 32 bytes |
| herald.E003 | REALTIME_TOKEN_TTL_SECONDS out of range |
| herald.E004 | REALTIME_SOCKET_URL not a ws:// or wss:// URL |
| herald.E005 | REALTIME_API_URL not an http:// or https:// URL |
| herald.E006 | REALTIME_API_KEY missing |
| herald.E007 | REALTIME_CHANNEL_PREFIX with characters that change how channels parse |
| herald.E008 | REALTIME_CHANNELS not an importable callable |
| herald.E009 | REALTIME_SUBSCRIPTION_AUTHORIZER not an importable callable |
| herald.E010 | REALTIME_PUBLISH_TIMEOUT not a positive number of seconds |
| herald.E011 | REALTIME_PUBLISH_MAX_RETRIES out of range |
| herald.E012 | REALTIME_PUBLISH_RETRY_BACKOFF not a positive number of seconds |
| herald.E013 | REALTIME_PUBLISH_RETRY_BACKOFF_MAX below the backoff or too large |
| herald.E014 | REALTIME_TOKEN_AUDIENCE not a string |
| herald.E015 | REALTIME_TOKEN_ISSUER not a string |
| herald.E016 | REALTIME_OUTBOX_BATCH_SIZE out of range |
| herald.E017 | REALTIME_OUTBOX_KEEP_SENT_SECONDS not a whole number of seconds >= 0 |
| herald.E018 | REALTIME_OUTBOX_CRITICAL not a bool |
| herald.W001 | retries may outlast the gateway's idempotency window |
| herald.E019-E025 | proxy mode, see ``herald.django.proxy.checks`` |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Warning
from django.utils.module_loading import import_string

from herald.django import conf
from herald.django.channels import PREFIX_RE


def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    messages += _secret()
    messages += _token_ttl()
    messages += _url(
        "REALTIME_SOCKET_URL", ("ws", "wss"), "herald.E004", "wss://realtime.example.com/connection/websocket"
    )
    messages += _url("REALTIME_API_URL", ("http", "https"), "herald.E005", "http://herald.internal:8000/api")
    messages += _api_key()
    messages += _prefix()
    messages += _hook("REALTIME_CHANNELS", "herald.E008", "a callable taking a user, returning channel names")
    messages += _hook(
        "REALTIME_SUBSCRIPTION_AUTHORIZER",
        "herald.E009",
        "a callable taking (user, channel), returning a bool",
    )
    messages += _publishing()
    messages += _string("REALTIME_TOKEN_AUDIENCE", "herald.E014")
    messages += _string("REALTIME_TOKEN_ISSUER", "herald.E015")
    messages += _outbox()
    return messages


def _outbox() -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    size = conf.raw("REALTIME_OUTBOX_BATCH_SIZE")
    low, high = conf.OUTBOX_BATCH_RANGE
    if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
        messages.append(
            Error(
                f"REALTIME_OUTBOX_BATCH_SIZE must be a whole number from {low} to {high}, not {size!r}.",
                hint="It is how many outbox rows one relay round locks and publishes (default 100).",
                id="herald.E016",
            )
        )
    keep = conf.raw("REALTIME_OUTBOX_KEEP_SENT_SECONDS")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        messages.append(
            Error(
                f"REALTIME_OUTBOX_KEEP_SENT_SECONDS must be a whole number of seconds, 0 or more, not {keep!r}.",
                hint="Sent outbox rows older than this are deleted by the relay (default 86400, a day).",
                id="herald.E017",
            )
        )
    critical = conf.raw("REALTIME_OUTBOX_CRITICAL")
    if not isinstance(critical, bool):
        messages.append(
            Error(
                f"REALTIME_OUTBOX_CRITICAL must be True or False, not {critical!r}.",
                hint="True makes publish_on_commit() write critical: events to the outbox by default.",
                id="herald.E018",
            )
        )
    return messages


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _secret() -> list[CheckMessage]:
    secret = conf.raw("REALTIME_HMAC_SECRET")
    if not isinstance(secret, str) or not secret:
        return [
            Error(
                "REALTIME_HMAC_SECRET is not set.",
                hint="Set it to the gateway's token_hmac_secret_key, read from the environment "
                'or a secret store (e.g. python -c "import secrets; print(secrets.token_urlsafe(48))").',
                id="herald.E001",
            )
        ]
    if len(secret.encode()) < conf.MIN_SECRET_BYTES:
        return [
            Error(
                f"REALTIME_HMAC_SECRET is {len(secret.encode())} bytes long; at least "
                f"{conf.MIN_SECRET_BYTES} are needed.",
                hint="A short HS256 key can be brute-forced offline from any token; the gateway "
                "refuses such a secret too. Generate a longer one.",
                id="herald.E002",
            )
        ]
    return []


def _token_ttl() -> list[CheckMessage]:
    ttl = conf.raw("REALTIME_TOKEN_TTL_SECONDS")
    low, high = conf.TOKEN_TTL_RANGE
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not low <= ttl <= high:
        return [
            Error(
                f"REALTIME_TOKEN_TTL_SECONDS must be a whole number of seconds between {low} and {high}, not {ttl!r}.",
                hint="Clients refresh their token before it expires: a very short lifetime turns into "
                "a refresh storm, a very long one keeps stale grants alive. The default is 600.",
                id="herald.E003",
            )
        ]
    return []


def _url(name: str, schemes: tuple[str, ...], check_id: str, example: str) -> list[CheckMessage]:
    value = conf.raw(name)
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in schemes or not parts.netloc:
        return [
            Error(
                f"{name} must be an absolute {' or '.join(s + '://' for s in schemes)} URL, not {value!r}.",
                hint=f"For example {example!r}.",
                id=check_id,
            )
        ]
    return []


def _api_key() -> list[CheckMessage]:
    key = conf.raw("REALTIME_API_KEY")
    if not isinstance(key, str) or not key:
        return [
            Error(
                "REALTIME_API_KEY is not set.",
                hint="Set it to the gateway's api_key; without it every API call is answered with 401.",
                id="herald.E006",
            )
        ]
    return []


def _prefix() -> list[CheckMessage]:
    prefix = conf.raw("REALTIME_CHANNEL_PREFIX")
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
        return [
            Error(
                f"REALTIME_CHANNEL_PREFIX {prefix!r} may only contain letters, digits, '_', '.' and '-'.",
                hint="The prefix goes after the namespace (critical:prod_tenant_1); ':', '$' or '#' in it "
                "would change how the gateway reads the channel. Use e.g. 'prod_' or ''.",
                id="herald.E007",
            )
        ]
    return []


def _hook(name: str, check_id: str, what: str) -> list[CheckMessage]:
    path = conf.raw(name)
    problem = ""
    if not isinstance(path, str) or not path:
        problem = f"is {path!r}"
    else:
        try:
            hook = import_string(path)
        except ImportError as exc:
            problem = f"cannot be imported ({exc})"
        else:
            if not callable(hook):
                problem = "is not callable"
    if problem:
        return [
            Error(
                f"{name} {problem}.",
                hint=f"Give the dotted path of {what}, or remove the setting to use the default "
                f"{conf.DEFAULTS[name]!r}.",
                id=check_id,
            )
        ]
    return []


def _publishing() -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    timeout = conf.raw("REALTIME_PUBLISH_TIMEOUT")
    timeout_ok = _is_number(timeout) and 0 < timeout <= conf.PUBLISH_TIMEOUT_MAX
    if not timeout_ok:
        messages.append(
            Error(
                f"REALTIME_PUBLISH_TIMEOUT must be a number of seconds in (0, {conf.PUBLISH_TIMEOUT_MAX:g}], "
                f"not {timeout!r}.",
                hint="It bounds each HTTP call to the gateway; a few seconds is plenty (default 10).",
                id="herald.E010",
            )
        )
    retries = conf.raw("REALTIME_PUBLISH_MAX_RETRIES")
    retries_ok = isinstance(retries, int) and not isinstance(retries, bool) and 0 <= retries <= conf.MAX_RETRIES_MAX
    if not retries_ok:
        messages.append(
            Error(
                f"REALTIME_PUBLISH_MAX_RETRIES must be a whole number from 0 to {conf.MAX_RETRIES_MAX}, "
                f"not {retries!r}.",
                hint="It is how many times a transient failure is retried before the event is dropped.",
                id="herald.E011",
            )
        )
    backoff = conf.raw("REALTIME_PUBLISH_RETRY_BACKOFF")
    backoff_ok = _is_number(backoff) and 0 < backoff <= conf.BACKOFF_MAX
    if not backoff_ok:
        messages.append(
            Error(
                f"REALTIME_PUBLISH_RETRY_BACKOFF must be a number of seconds in (0, {conf.BACKOFF_MAX:g}], "
                f"not {backoff!r}.",
                hint="It is the first retry delay; each later one doubles, with jitter (default 1).",
                id="herald.E012",
            )
        )
    cap = conf.raw("REALTIME_PUBLISH_RETRY_BACKOFF_MAX")
    cap_ok = _is_number(cap) and 0 < cap <= conf.BACKOFF_MAX and (not backoff_ok or cap >= backoff)
    if not cap_ok:
        messages.append(
            Error(
                f"REALTIME_PUBLISH_RETRY_BACKOFF_MAX must be a number of seconds, at least "
                f"REALTIME_PUBLISH_RETRY_BACKOFF and at most {conf.BACKOFF_MAX:g}, not {cap!r}.",
                hint="It caps the growing retry delay (default 60).",
                id="herald.E013",
            )
        )
    if timeout_ok and retries_ok and backoff_ok and cap_ok:
        worst = worst_case_retry_seconds(retries, backoff, cap, timeout)
        if worst > conf.IDEMPOTENCY_WINDOW_SECONDS:
            messages.append(
                Warning(
                    f"A publish may be retried for up to {worst:.0f}s, longer than the gateway's "
                    f"{conf.IDEMPOTENCY_WINDOW_SECONDS:.0f}s idempotency window.",
                    hint="A retry after the window cannot be deduplicated: a publish that timed out "
                    "but was applied could be delivered twice. Lower the retries, backoff or timeout.",
                    id="herald.W001",
                )
            )
    return messages


def worst_case_retry_seconds(retries: int, backoff: float, cap: float, timeout: float) -> float:
    """Time from the first attempt to the start of the last: every delay at its maximum,
    every earlier attempt running into the timeout."""
    delays = sum(min(cap, backoff * (1 << attempt)) for attempt in range(retries))
    return delays + retries * timeout


def _string(name: str, check_id: str) -> list[CheckMessage]:
    value = conf.raw(name)
    if not isinstance(value, str):
        return [
            Error(
                f"{name} must be a string, not {type(value).__name__}.",
                hint="Leave it empty ('') unless the gateway is configured to check it.",
                id=check_id,
            )
        ]
    return []
