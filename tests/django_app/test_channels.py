"""Channel names: default grants and the environment prefix, applied exactly once."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.test import override_settings

from herald.django.channels import (
    default_channels,
    granted_channels,
    recoverable,
    split_channel,
    with_prefix,
    without_prefix,
)
from herald.django.publisher import resolve_channel


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("tenant_1", "prod_tenant_1"),
        ("prod_tenant_1", "prod_tenant_1"),
        ("critical:tenant_1", "critical:prod_tenant_1"),
        ("critical:prod_tenant_1", "critical:prod_tenant_1"),
        ("$secret:room", "$secret:prod_room"),
        ("dialog#1,2", "prod_dialog#1,2"),
    ],
)
def test_prefix_goes_after_the_namespace_exactly_once(channel: str, expected: str) -> None:
    assert with_prefix(channel, "prod_") == expected
    assert with_prefix(expected, "prod_") == expected


def test_empty_prefix_changes_nothing() -> None:
    assert with_prefix("critical:tenant_1", "") == "critical:tenant_1"


@pytest.mark.parametrize("channel", ["", "critical:", "$"])
def test_a_channel_needs_a_name(channel: str) -> None:
    with pytest.raises(ValueError, match="empty name"):
        with_prefix(channel, "prod_")


def test_split_and_strip() -> None:
    assert split_channel("$critical:a:b") == ("$", "critical:", "a:b")
    assert without_prefix("critical:prod_tenant_1", "prod_") == "critical:tenant_1"
    assert without_prefix("critical:staging_tenant_1", "prod_") is None
    assert without_prefix("prod_", "prod_") is None


def test_recoverable_moves_into_the_critical_namespace_once() -> None:
    assert recoverable("tenant_1") == "critical:tenant_1"
    assert recoverable("critical:tenant_1") == "critical:tenant_1"
    with pytest.raises(ValueError, match="namespace 'chat'"):
        recoverable("chat:room")


@pytest.mark.parametrize("channel", ["tenant_1", "test_tenant_1", "critical:tenant_1", "critical:test_tenant_1"])
def test_publish_channel_is_resolved_exactly_once(channel: str) -> None:
    # The test settings use the prefix "test_".
    assert resolve_channel(channel, recoverable=True) == "critical:test_tenant_1"


def test_default_grants_with_and_without_tenant() -> None:
    assert default_channels(SimpleNamespace(pk=5, tenant_id=42)) == [
        "user_5",
        "critical:user_5",
        "tenant_42",
        "critical:tenant_42",
    ]
    assert default_channels(SimpleNamespace(pk=5, tenant_id=None)) == ["user_5", "critical:user_5"]
    assert default_channels(SimpleNamespace(pk=5)) == ["user_5", "critical:user_5"]


def test_granted_channels_are_prefixed_and_deduplicated() -> None:
    user = SimpleNamespace(pk=5, tenant_id=42)
    assert granted_channels(user) == [
        "test_user_5",
        "critical:test_user_5",
        "test_tenant_42",
        "critical:test_tenant_42",
    ]


def custom_channels(user: Any) -> list[str]:
    return ["news", "test_news", f"critical:team_{user.team}"]


def string_channels(user: Any) -> str:
    return "news"


def test_a_custom_hook_decides_the_grants() -> None:
    with override_settings(REALTIME_CHANNELS=f"{__name__}.custom_channels"):
        assert granted_channels(SimpleNamespace(pk=1, team="red")) == ["test_news", "critical:test_team_red"]


def test_a_hook_returning_a_string_is_refused() -> None:
    with override_settings(REALTIME_CHANNELS=f"{__name__}.string_channels"), pytest.raises(TypeError):
        granted_channels(SimpleNamespace(pk=1))
