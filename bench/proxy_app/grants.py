"""The storm's grant: the history-keeping benchmark channel."""

from __future__ import annotations

from typing import Any


def storm_channels(user: Any) -> list[str]:
    return ["critical:storm"]
