"""An official-SDK (``centrifuge-python``) client that records what a browser would see."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)

from tests.support.timing import seconds

_T = TypeVar("_T")


class _Events(ClientEventHandler):  # type: ignore[misc]  # the SDK ships no type information
    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        self.listener.record(("connecting", ctx.code))

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self.listener.record(("connected", 0))

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.listener.record(("disconnected", ctx.code))


class _SubEvents(SubscriptionEventHandler):  # type: ignore[misc]
    def __init__(self, listener: Listener, channel: str) -> None:
        self.listener = listener
        self.channel = channel

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.listener.record(("subscribed", self.channel))

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.listener.record(("unsubscribed", self.channel, ctx.code))

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.listener.publications.setdefault(self.channel, []).append(ctx.pub.data)
        self.listener.record(("publication", self.channel))


class Listener:
    def __init__(self, ws_url: str, token: str = "", get_token: Callable[[], Awaitable[str]] | None = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.publications: dict[str, list[Any]] = {}
        self._changed = asyncio.Event()
        self.client = Client(
            ws_url,
            events=_Events(self),
            token=token,
            get_token=get_token,
            min_reconnect_delay=0.05,
            max_reconnect_delay=0.5,
            proxy=None,
        )

    def record(self, event: tuple[Any, ...]) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, at most ``within`` time units."""
        deadline = time.monotonic() + seconds(within)
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"condition not met; events so far: {self.events}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def connect(self) -> None:
        await self.client.connect()
        await self.wait_for(lambda: ("connected", 0) in self.events)

    async def subscribe(self, channel: str, **options: Any) -> tuple[Any, ...]:
        """Subscribe and return ``("subscribed", channel)`` or ``("unsubscribed", channel, code)``."""
        sub = self.client.new_subscription(channel, events=_SubEvents(self, channel), **options)
        await sub.subscribe()
        await self.wait_for(lambda: self._outcome(channel) is not None)
        outcome = self._outcome(channel)
        assert outcome is not None
        return outcome

    def _outcome(self, channel: str) -> tuple[Any, ...] | None:
        for event in self.events:
            if event[0] in ("subscribed", "unsubscribed") and event[1] == channel:
                return event
        return None

    async def close(self) -> None:
        await self.client.disconnect()
        # The SDK closes its WebSocket in a background task; let it finish before the
        # event loop ends, or the socket is left for the garbage collector.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=seconds(5))


class SyncListener:
    """A :class:`Listener` on an event loop of its own thread, for tests whose body is sync
    code (the Django ORM and transactions stay on the test's thread)."""

    def __init__(self, ws_url: str, token: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sdk-listener", daemon=True)
        self._thread.start()

        async def make() -> Listener:
            return Listener(ws_url, token=token)

        self.listener = self._run(make())
        self._run(self.listener.connect())

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(seconds(30))

    def subscribe(self, channel: str) -> None:
        assert self._run(self.listener.subscribe(channel)) == ("subscribed", channel)

    def publications(self, channel: str) -> list[Any]:
        async def read() -> list[Any]:
            return list(self.listener.publications.get(channel, []))

        return self._run(read())

    def wait_for(self, predicate: Callable[[], bool], within: float = 15.0) -> None:
        self._run(self.listener.wait_for(predicate, within))

    def wait_count(self, channel: str, count: int, within: float = 15.0) -> list[Any]:
        self.wait_for(lambda: len(self.listener.publications.get(channel, [])) >= count, within)
        return self.publications(channel)

    def close(self) -> None:
        try:
            self._run(self.listener.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(seconds(10))
            self._loop.close()

    def __enter__(self) -> SyncListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
