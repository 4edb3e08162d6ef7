"""Record every event of a ``centrifuge-python`` client and its subscriptions, and wait on them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from centrifuge import ClientEventHandler, SubscriptionEventHandler

from tests.support.timing import seconds, wait_until

T = TypeVar("T")


@dataclass
class Event:
    kind: str  # e.g. "connected", "publication", "sub:subscribed", "sub:publication"
    channel: str
    ctx: Any
    at: float = field(default_factory=time.monotonic)  # when it was recorded


class Recorder:
    """Every event of one SDK client, in order; ``wait_for`` and friends wait on them.

    Waits take ``within`` time units (see ``tests/support/timing.py``). ``mark()`` and ``since``
    look only at events recorded after a point, e.g. the resubscription after a reconnect.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def record(self, kind: str, channel: str, ctx: Any) -> None:
        pub = getattr(ctx, "pub", None)
        if pub is not None and isinstance(pub.data, bytes):
            # A Protobuf client gets payloads as bytes: JSON here, decoded so that tests compare
            # the same values over both protocols.
            pub.data = json.loads(pub.data)
        self.events.append(Event(kind, channel, ctx))
        self._changed.set()

    def mark(self) -> int:
        """Index of the next event: pass it as ``since`` to look only at later events."""
        return len(self.events)

    def of(self, kind: str, channel: str = "", since: int = 0) -> list[Event]:
        return [e for e in self.events[since:] if e.kind == kind and (not channel or e.channel == channel)]

    async def wait(self, condition: Callable[[], T], what: str, within: float = 5.0) -> T:
        """Wait until ``condition()`` is truthy (checked whenever an event arrives); its value."""
        return await wait_until(condition, lambda: f"{what}; saw {self.seen()}", within=within, wake=self._changed)

    async def wait_for(
        self,
        kind: str,
        channel: str = "",
        where: Callable[[Any], bool] | None = None,
        within: float = 5.0,
        since: int = 0,
    ) -> Event:
        """The first event of ``kind`` (on ``channel``; from index ``since``) whose ``ctx`` satisfies ``where``."""

        def first() -> Event | None:
            return next((e for e in self.of(kind, channel, since) if where is None or where(e.ctx)), None)

        found = await self.wait(first, f"a {kind!r} event on {channel!r}", within)
        assert found is not None
        return found

    def seen(self) -> list[tuple[str, str]]:
        return [(e.kind, e.channel) for e in self.events]

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


# The SDK's two encodings: scenarios run over both (``Client(..., use_protobuf=...)``).
PROTOCOLS = ["json", "protobuf"]
