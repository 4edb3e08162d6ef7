"""Tokens for tests, signed with the test gateway's secret."""

from __future__ import annotations

from typing import Any

from herald.tokens import mint_connection_token, mint_subscription_token
from tests.support.gateway import TEST_SECRET

#: What ``token()`` grants by default (decisions §1: the ``channels`` claim lists the grants).
GRANTS = ["user_5", "critical:user_5", "tenant_42", "critical:tenant_42"]
#: Channels next to the grants that they do not cover: another tenant, a prefix of a granted
#: name, a granted name extended, another tenant in a granted namespace. Grants match exactly,
#: so each is refused (103).
REFUSED = ["tenant_43", "tenant_4", "tenant_420", "critical:tenant_43"]


def token(user: str = "5", channels: list[str] | None = None, ttl: int | None = 600, **kw: Any) -> str:
    return mint_connection_token(TEST_SECRET, user, channels=GRANTS if channels is None else channels, ttl=ttl, **kw)


def sub_token(channel: str, user: str = "5", ttl: int | None = 600, **kw: Any) -> str:
    return mint_subscription_token(TEST_SECRET, user, channel, ttl=ttl, **kw)
