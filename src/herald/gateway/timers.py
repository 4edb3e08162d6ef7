"""A coarse timer wheel: one task serves every connection's pings, pong checks and deadlines.

Idle connections must cost next to nothing, so instead of an event-loop timer per connection
(and per ping), deadlines are dropped into buckets of ``resolution`` seconds and one task
walks the buckets. Callbacks re-check their own condition when they fire, so a deadline that
became moot (the connection closed, the token was refreshed) needs no cancellation. A deadline
that may be hours away (a token's expiry) is scheduled :func:`weakly`, so that the wheel does
not keep a closed connection in memory until it comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def weakly(obj: T, func: Callable[..., None], *args: Any) -> Callable[[], None]:
    """A callback that runs ``func(obj, *args)`` if ``obj`` still exists, without keeping it alive."""
    return functools.partial(_if_alive, weakref.ref(obj), func, args)


def _if_alive(ref: weakref.ref[Any], func: Callable[..., None], args: tuple[Any, ...]) -> None:
    obj = ref()
    if obj is not None:
        func(obj, *args)


class TimerWheel:
    __slots__ = ("_buckets", "_clock", "_next", "_resolution", "_task")

    def __init__(self, resolution: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self._resolution = resolution
        self._clock = clock
        self._buckets: dict[int, list[Callable[[], None]]] = {}
        self._next = math.floor(clock() / resolution)
        self._task: asyncio.Task[None] | None = None

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` at or shortly after monotonic time ``when``."""
        slot = max(math.ceil(when / self._resolution), self._next)
        bucket = self._buckets.get(slot)
        if bucket is None:
            self._buckets[slot] = [callback]
        else:
            bucket.append(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.call_at(self._clock() + delay, callback)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def run_due(self) -> None:
        """Fire every callback whose slot has passed."""
        now_slot = math.floor(self._clock() / self._resolution)
        while self._next <= now_slot:
            bucket = self._buckets.pop(self._next, None)
            self._next += 1
            if bucket:
                for callback in bucket:
                    try:
                        callback()
                    except Exception:  # one broken callback must not stop every other timer
                        log.exception("timer callback %r failed", callback)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._resolution)
            self.run_due()
