"""Tokens for tests, signed with the test gateway's secret."""

from __future__ import annotations

from typing import Any

from herald.tokens import mint_connection_token, mint_subscription_token
from tests.support.gateway import TEST_SECRET

GRANTS = ["user_5", "critical:user_5", "tenant_42", "critical:tenant_42"]


def token(user: str = "5", channels: list[str] | None = None, ttl: int | None = 600, **kw: Any) -> str:
    return mint_connection_token(TEST_SECRET, user, channels=GRANTS if channels is None else channels, ttl=ttl, **kw)


def sub_token(channel: str, user: str = "5", ttl: int | None = 600, **kw: Any) -> str:
    return mint_subscription_token(TEST_SECRET, user, channel, ttl=ttl, **kw)
