"""An official-SDK (``centrifuge-python``) client that records what a browser would see.

The events are recorded by the suite's one recorder (``tests/support/pyclient.py``); this
adds the views the end-to-end tests read: event tuples and publications per channel.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from centrifuge import Client

from tests.support.pyclient import Event, Recorder, close_client
from tests.support.timing import seconds

_T = TypeVar("_T")


def _as_tuple(event: Event) -> tuple[Any, ...] | None:
    """``("connecting", code)``, ``("connected", 0)``, ``("disconnected", code)``,
    ``("subscribed", channel)``, ``("unsubscribed", channel, code)``, ``("publication", channel)``;
    None for the events the end-to-end tests do not look at."""
    kind, ctx = event.kind, event.ctx
    if kind in ("connecting", "disconnected"):
        return (kind, ctx.code)
    if kind == "connected":
        return ("connected", 0)
    if kind in ("sub:subscribed", "sub:publication"):
        return (kind[4:], event.channel)
    if kind == "sub:unsubscribed":
        return ("unsubscribed", event.channel, ctx.code)
    return None


class Listener:
    def __init__(
        self,
        ws_url: str,
        token: str = "",
        get_token: Callable[[], Awaitable[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.recorder = Recorder()
        self.client = Client(
            ws_url,
            events=self.recorder.client_handler(),
            token=token,
            get_token=get_token,
            # Sent with the WebSocket upgrade, as a browser sends its cookies.
            headers=headers,
            min_reconnect_delay=0.05,
            max_reconnect_delay=0.5,
            proxy=None,
        )

    @property
    def events(self) -> list[tuple[Any, ...]]:
        """Everything recorded so far, as tuples (see :func:`_as_tuple`), in order."""
        return [t for t in map(_as_tuple, self.recorder.events) if t is not None]

    @property
    def publications(self) -> dict[str, list[Any]]:
        """The data of every publication received, per channel, in order."""
        received: dict[str, list[Any]] = {}
        for event in self.recorder.of("sub:publication"):
            received.setdefault(event.channel, []).append(event.ctx.pub.data)
        return received

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, at most ``within`` time units."""
        await self.recorder.wait(predicate, "the condition", within)

    async def connect(self) -> None:
        await self.client.connect()
        await self.recorder.wait_for("connected", within=10)

    async def subscribe(self, channel: str, **options: Any) -> tuple[Any, ...]:
        """Subscribe and return ``("subscribed", channel)`` or ``("unsubscribed", channel, code)``."""
        sub = self.client.new_subscription(channel, events=self.recorder.sub_handler(channel), **options)
        await sub.subscribe()
        outcome = await self.recorder.wait(lambda: self._outcome(channel), f"subscribing to {channel} to end", 10)
        assert outcome is not None
        return outcome

    def _outcome(self, channel: str) -> tuple[Any, ...] | None:
        for event in self.events:
            if event[0] in ("subscribed", "unsubscribed") and event[1] == channel:
                return event
        return None

    async def close(self) -> None:
        await close_client(self.client)


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
