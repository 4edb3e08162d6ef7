"""The test project's subscription authorizer: a user may open their own report channel, and
the chat of their tenant (asked by the subscribe proxy, so a tenant change in the database
takes effect at the next subscribe)."""

from __future__ import annotations

from typing import Any


def can_subscribe(user: Any, channel: str) -> bool:
    if channel == f"report_{user.pk}":
        return True
    return user.tenant_id is not None and channel == f"chat:tenant_{user.tenant_id}"
