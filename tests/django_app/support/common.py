"""Helpers shared by the test modules."""

from __future__ import annotations

import re
import uuid


def unique(name: str) -> str:
    """A channel name no other test (or earlier run) uses."""
    return f"{name}_{uuid.uuid4().hex[:8]}"


def succeeded(task_id: str) -> str:
    """The worker's log line for a task that finished (after any retries)."""
    return rf"Task herald\.publish_realtime_event\[{re.escape(task_id)}\] succeeded"
