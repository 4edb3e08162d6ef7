"""One scalable time unit for every wait in the tests (set HERALD_TEST_TIME_UNIT on slow machines),
and the one way to wait for a state: poll it until it holds or a deadline passes.

    await wait_until(lambda: stats(gw, ch) == (0, 0), "presence to empty")
    reply = await wait_until(lambda: accepted_or_none(gw), "a connection to be admitted", within=10)

A test never sleeps a fixed time and then decides: it waits for what it expects, and a wait
that runs out fails with what it was waiting for and the last value it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

UNIT: float = float(os.environ.get("HERALD_TEST_TIME_UNIT", "1.0"))

T = TypeVar("T")


def seconds(n: float) -> float:
    """``n`` time units, in seconds."""
    return n * UNIT


def duration(units: float) -> str:
    """``units`` time units as a gateway config duration string (``"1500ms"``)."""
    return f"{round(seconds(units) * 1000)}ms"


async def wait_until(
    probe: Callable[[], T | Awaitable[T]],
    what: str | Callable[[], str],
    *,
    within: float = 5.0,
    interval: float = 0.02,
    wake: asyncio.Event | None = None,
) -> T:
    """Call ``probe`` (plain or async) until it returns something truthy, and return that.

    Gives up after ``within`` time units with an ``AssertionError`` naming ``what`` (a callable
    is asked only then, so it can describe the state at that moment) and the last value seen.
    Between calls it sleeps ``interval`` seconds or, given ``wake``, waits for that event
    (whoever changes the state sets it), so event-driven recorders wake at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds(within)
    while True:
        if wake is not None:
            wake.clear()  # before probing: a change during or after the probe sets it again
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]  # an awaitable probe's result is a T
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(_gave_up(what, within, value))
        if wake is None:
            await asyncio.sleep(min(interval, remaining))
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)


def wait_until_sync(
    probe: Callable[[], T], what: str | Callable[[], str], *, within: float = 5.0, interval: float = 0.05
) -> T:
    """:func:`wait_until` for code without an event loop (blocking)."""
    deadline = time.monotonic() + seconds(within)
    while True:
        value = probe()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(_gave_up(what, within, value))
        time.sleep(min(interval, remaining))


def _gave_up(what: str | Callable[[], str], within: float, value: object) -> str:
    described = what if isinstance(what, str) else what()
    return f"waited {seconds(within):.1f}s for {described}; last saw {value!r}"
