"""System checks: each bad setting produces exactly its id."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from herald.django.checks import check_settings, worst_case_retry_seconds
from herald.django.conf import get_settings

MISSING = object()


def ids(**overrides: Any) -> list[str]:
    present = {k: v for k, v in overrides.items() if v is not MISSING}
    with override_settings(**present):
        for name, value in overrides.items():
            if value is MISSING:
                delattr(settings, name)
        return [m.id for m in check_settings() if m.id is not None]


def test_the_test_settings_pass() -> None:
    assert ids() == []


def test_defaults_need_only_the_required_settings() -> None:
    optional = [
        "REALTIME_TOKEN_TTL_SECONDS",
        "REALTIME_CHANNEL_PREFIX",
        "REALTIME_SUBSCRIPTION_AUTHORIZER",
        "REALTIME_PUBLISH_TIMEOUT",
        "REALTIME_PUBLISH_MAX_RETRIES",
        "REALTIME_PUBLISH_RETRY_BACKOFF",
        "REALTIME_PUBLISH_RETRY_BACKOFF_MAX",
    ]
    assert ids(**dict.fromkeys(optional, MISSING)) == []


@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("REALTIME_HMAC_SECRET", MISSING, "herald.E001"),
        ("REALTIME_HMAC_SECRET", "", "herald.E001"),
        ("REALTIME_HMAC_SECRET", b"x" * 40, "herald.E001"),
        ("REALTIME_HMAC_SECRET", "secret", "herald.E002"),
        ("REALTIME_HMAC_SECRET", "x" * 31, "herald.E002"),
        ("REALTIME_TOKEN_TTL_SECONDS", 5, "herald.E003"),
        ("REALTIME_TOKEN_TTL_SECONDS", 10 * 86_400, "herald.E003"),
        ("REALTIME_TOKEN_TTL_SECONDS", "600", "herald.E003"),
        ("REALTIME_TOKEN_TTL_SECONDS", True, "herald.E003"),
        ("REALTIME_SOCKET_URL", MISSING, "herald.E004"),
        ("REALTIME_SOCKET_URL", "http://gw/connection/websocket", "herald.E004"),
        ("REALTIME_SOCKET_URL", "/connection/websocket", "herald.E004"),
        ("REALTIME_API_URL", MISSING, "herald.E005"),
        ("REALTIME_API_URL", "ws://gw/api", "herald.E005"),
        ("REALTIME_API_KEY", "", "herald.E006"),
        ("REALTIME_API_KEY", None, "herald.E006"),
        ("REALTIME_CHANNEL_PREFIX", "prod:", "herald.E007"),
        ("REALTIME_CHANNEL_PREFIX", "prod#", "herald.E007"),
        ("REALTIME_CHANNEL_PREFIX", "$prod", "herald.E007"),
        ("REALTIME_CHANNELS", "no.such.module.hook", "herald.E008"),
        ("REALTIME_CHANNELS", "herald.django.conf.MIN_SECRET_BYTES", "herald.E008"),
        ("REALTIME_CHANNELS", "", "herald.E008"),
        ("REALTIME_SUBSCRIPTION_AUTHORIZER", "tests.django_app.grants.nothing", "herald.E009"),
        ("REALTIME_PUBLISH_TIMEOUT", 0, "herald.E010"),
        ("REALTIME_PUBLISH_TIMEOUT", 600, "herald.E010"),
        ("REALTIME_PUBLISH_TIMEOUT", "10", "herald.E010"),
        ("REALTIME_PUBLISH_MAX_RETRIES", -1, "herald.E011"),
        ("REALTIME_PUBLISH_MAX_RETRIES", 2.5, "herald.E011"),
        ("REALTIME_PUBLISH_RETRY_BACKOFF", 0, "herald.E012"),
        ("REALTIME_PUBLISH_RETRY_BACKOFF_MAX", 0.01, "herald.E013"),
        ("REALTIME_TOKEN_AUDIENCE", None, "herald.E014"),
        ("REALTIME_TOKEN_ISSUER", 3, "herald.E015"),
        ("REALTIME_OUTBOX_BATCH_SIZE", 0, "herald.E016"),
        ("REALTIME_OUTBOX_BATCH_SIZE", 20_000, "herald.E016"),
        ("REALTIME_OUTBOX_BATCH_SIZE", True, "herald.E016"),
        ("REALTIME_OUTBOX_KEEP_SENT_SECONDS", -1, "herald.E017"),
        ("REALTIME_OUTBOX_KEEP_SENT_SECONDS", 1.5, "herald.E017"),
        ("REALTIME_OUTBOX_CRITICAL", "yes", "herald.E018"),
    ],
)
def test_each_bad_setting_produces_exactly_its_id(setting: str, value: Any, check_id: str) -> None:
    assert ids(**{setting: value}) == [check_id]


def test_every_message_has_a_hint() -> None:
    with override_settings(REALTIME_HMAC_SECRET="", REALTIME_API_KEY="", REALTIME_PUBLISH_TIMEOUT=0):
        messages = check_settings()
    assert len(messages) == 3
    assert all(m.hint for m in messages)


def test_retries_longer_than_the_idempotency_window_warn() -> None:
    overrides = {
        "REALTIME_PUBLISH_MAX_RETRIES": 20,
        "REALTIME_PUBLISH_RETRY_BACKOFF": 10,
        "REALTIME_PUBLISH_RETRY_BACKOFF_MAX": 60,
        "REALTIME_PUBLISH_TIMEOUT": 10,
    }
    assert ids(**overrides) == ["herald.W001"]


def test_default_retry_schedule_fits_the_idempotency_window() -> None:
    assert worst_case_retry_seconds(8, 1.0, 60.0, 10.0) < 300


def test_the_app_registers_its_checks() -> None:
    with override_settings(REALTIME_API_KEY=""):
        assert [m.id for m in run_checks(tags=["herald"])] == ["herald.E006"]


def test_settings_of_the_wrong_type_fail_loudly_at_use() -> None:
    with override_settings(REALTIME_TOKEN_TTL_SECONDS="600"), pytest.raises(ImproperlyConfigured, match="TTL"):
        get_settings()
    with override_settings(REALTIME_PUBLISH_TIMEOUT=3):
        assert get_settings().publish_timeout == 3.0
