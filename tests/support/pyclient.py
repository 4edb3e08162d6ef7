"""Record every event of a ``centrifuge-python`` client and its subscriptions, and wait on them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from centrifuge import ClientEventHandler, SubscriptionEventHandler

from tests.support.timing import seconds


@dataclass
class Event:
    kind: str  # e.g. "connected", "publication", "sub:subscribed", "sub:publication"
    channel: str
    ctx: Any


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def record(self, kind: str, channel: str, ctx: Any) -> None:
        self.events.append(Event(kind, channel, ctx))
        self._changed.set()

    def of(self, kind: str, channel: str = "") -> list[Event]:
        return [e for e in self.events if e.kind == kind and (not channel or e.channel == channel)]

    async def wait_for(
        self, kind: str, channel: str = "", where: Callable[[Any], bool] | None = None, timeout: float | None = None
    ) -> Event:
        """The first recorded event of ``kind`` (on ``channel``) whose context satisfies ``where``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or seconds(5))
        while True:
            for event in self.events:
                if (
                    event.kind == kind
                    and (not channel or event.channel == channel)
                    and (where is None or where(event.ctx))
                ):
                    return event
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [(e.kind, e.channel) for e in self.events]
                raise AssertionError(f"no {kind!r} event on {channel!r}; saw {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_count(self, kind: str, channel: str, count: int, timeout: float | None = None) -> list[Event]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or seconds(5))
        while len(found := self.of(kind, channel)) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{len(found)} of {count} {kind!r} events on {channel!r}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return found

    def client_handler(self) -> ClientEventHandler:
        recorder = self

        class Handler(ClientEventHandler):
            async def on_connecting(self, ctx: Any) -> None:
                recorder.record("connecting", "", ctx)

            async def on_connected(self, ctx: Any) -> None:
                recorder.record("connected", "", ctx)

            async def on_disconnected(self, ctx: Any) -> None:
                recorder.record("disconnected", "", ctx)

            async def on_error(self, ctx: Any) -> None:
                recorder.record("error", "", ctx)

            async def on_subscribed(self, ctx: Any) -> None:
                recorder.record("subscribed", ctx.channel, ctx)

            async def on_subscribing(self, ctx: Any) -> None:
                recorder.record("subscribing", ctx.channel, ctx)

            async def on_unsubscribed(self, ctx: Any) -> None:
                recorder.record("unsubscribed", ctx.channel, ctx)

            async def on_publication(self, ctx: Any) -> None:
                recorder.record("publication", ctx.channel, ctx)

        return Handler()

    def sub_handler(self, channel: str) -> SubscriptionEventHandler:
        recorder = self

        class Handler(SubscriptionEventHandler):
            async def on_subscribing(self, ctx: Any) -> None:
                recorder.record("sub:subscribing", channel, ctx)

            async def on_subscribed(self, ctx: Any) -> None:
                recorder.record("sub:subscribed", channel, ctx)

            async def on_unsubscribed(self, ctx: Any) -> None:
                recorder.record("sub:unsubscribed", channel, ctx)

            async def on_publication(self, ctx: Any) -> None:
                recorder.record("sub:publication", channel, ctx)

            async def on_join(self, ctx: Any) -> None:
                recorder.record("sub:join", channel, ctx)

            async def on_leave(self, ctx: Any) -> None:
                recorder.record("sub:leave", channel, ctx)

            async def on_error(self, ctx: Any) -> None:
                recorder.record("sub:error", channel, ctx)

        return Handler()


async def close_client(client: Any) -> None:
    """Disconnect and wait for the SDK's background socket closing, so no transport outlives the test."""
    await client.disconnect()
    pending = list(getattr(client, "_background_tasks", ()))  # the SDK closes sockets in spawned tasks
    if pending:
        await asyncio.wait(pending, timeout=seconds(5))
