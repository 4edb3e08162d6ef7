"""One typed view of the ``REALTIME_*`` settings, with defaults.

Values are read from ``django.conf.settings`` on every call (a dozen attribute look-ups),
so ``override_settings`` in tests and per-process settings in workers just work. The
system checks in ``checks.py`` report bad values with stable ids; this module only refuses
values of the wrong *type*, so a mistake fails loudly instead of flowing on as a string.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

DEFAULT_CHANNELS: Final = "herald.django.channels.default_channels"
DEFAULT_SUBSCRIPTION_AUTHORIZER: Final = "herald.django.channels.deny_all"

# Limits the checks enforce (why each one: see checks.py).
MIN_SECRET_BYTES: Final = 32
TOKEN_TTL_RANGE: Final = (30, 86_400)
PUBLISH_TIMEOUT_MAX: Final = 120.0
MAX_RETRIES_MAX: Final = 100
BACKOFF_MAX: Final = 3_600.0
OUTBOX_BATCH_RANGE: Final = (1, 10_000)
# Proxy TTLs: 0 (never expires) or a lifetime in this range, like a token's.
PROXY_TTL_RANGE: Final = TOKEN_TTL_RANGE
# The gateway remembers idempotency keys for five minutes (decisions §6).
IDEMPOTENCY_WINDOW_SECONDS: Final = 300.0


@dataclass(frozen=True, slots=True)
class HeraldSettings:
    # Each field maps to ``REALTIME_<FIELD NAME IN UPPER CASE>``.
    hmac_secret: str = ""
    token_ttl_seconds: int = 600
    token_audience: str = ""
    token_issuer: str = ""
    socket_url: str = ""
    api_url: str = ""
    api_key: str = ""
    channel_prefix: str = ""
    channels: str = DEFAULT_CHANNELS
    subscription_authorizer: str = DEFAULT_SUBSCRIPTION_AUTHORIZER
    publish_timeout: float = 10.0
    publish_max_retries: int = 8
    publish_retry_backoff: float = 1.0
    publish_retry_backoff_max: float = 60.0
    # The transactional outbox (outbox.py).
    outbox_critical: bool = False
    outbox_batch_size: int = 100
    outbox_keep_sent_seconds: int = 86_400
    # Proxy mode (herald.django.proxy): the gateway asks Django at connect, subscribe...
    proxy_secret: str = ""
    proxy_secret_header: str = "X-Realtime-Proxy-Secret"
    proxy_connection_ttl_seconds: int = 600
    proxy_subscription_ttl_seconds: int = 0
    disconnect_on_logout: bool = True


def setting_name(field_name: str) -> str:
    return f"REALTIME_{field_name.upper()}"


DEFAULTS: Final[dict[str, Any]] = {setting_name(f.name): f.default for f in fields(HeraldSettings)}


def raw(name: str) -> Any:
    """A setting as the project wrote it (or its default); for the checks."""
    return getattr(django_settings, name, DEFAULTS[name])


def get_settings() -> HeraldSettings:
    values: dict[str, Any] = {}
    for f in fields(HeraldSettings):
        name = setting_name(f.name)
        value = raw(name)
        default = DEFAULTS[name]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        # bool is an int: refuse it explicitly so ``REALTIME_TOKEN_TTL_SECONDS = True`` fails.
        if (isinstance(value, bool) and not isinstance(default, bool)) or not isinstance(value, type(default)):
            raise ImproperlyConfigured(
                f"{name} must be of type {type(default).__name__}, not {type(value).__name__}; "
                "run `manage.py check` for details"
            )
        values[f.name] = value
    return HeraldSettings(**values)
