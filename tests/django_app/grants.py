"""The test project's subscription-token authorizer: a user may open their own report channel."""

from __future__ import annotations

from typing import Any


def can_subscribe(user: Any, channel: str) -> bool:
    return channel == f"report_{user.pk}"
