"""Markers and helpers shared by the test modules."""

from __future__ import annotations

import importlib
import re
import uuid

import pytest


def _gateway_importable() -> bool:
    try:
        importlib.import_module("herald.gateway.app")
    except ImportError:
        return False
    return True


# The end-to-end tests need a real gateway process; they are skipped only while the
# gateway package itself is missing, never because a running gateway misbehaves.
requires_gateway = pytest.mark.skipif(
    not _gateway_importable(), reason="gateway not implemented: herald.gateway.app cannot be imported"
)


def unique(name: str) -> str:
    """A channel name no other test (or earlier run) uses."""
    return f"{name}_{uuid.uuid4().hex[:8]}"


def succeeded(task_id: str) -> str:
    """The worker's log line for a task that finished (after any retries)."""
    return rf"Task herald\.publish_realtime_event\[{re.escape(task_id)}\] succeeded"
