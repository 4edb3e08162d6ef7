"""One scalable time unit for every wait in the tests (set HERALD_TEST_TIME_UNIT on slow machines)."""

from __future__ import annotations

import os

UNIT: float = float(os.environ.get("HERALD_TEST_TIME_UNIT", "1.0"))


def seconds(n: float) -> float:
    """``n`` time units, in seconds."""
    return n * UNIT
