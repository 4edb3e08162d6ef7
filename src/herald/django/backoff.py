"""Retry delays shared by the Celery task and the outbox relay."""

from __future__ import annotations

import random
from collections.abc import Callable


def retry_delay(retries: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Delay before retry number ``retries + 1``: exponential with "equal jitter", capped.

    Before the cap the delay lies in ``[d/2, d]`` with ``d = base * 2**retries``: ranges of
    consecutive retries touch but never go backwards, so delays only grow, while the random
    half spreads the retries of many events that failed together (a gateway restart).
    Capping the result keeps that order; by the time delays reach the cap, the earlier
    jitter has already spread those events apart.
    """
    full = base * (1 << min(retries, 62))
    return min(cap, full / 2 + rand() * full / 2)
