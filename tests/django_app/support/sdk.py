"""An official-SDK (``centrifuge-python``) client that records what a browser would see.

The events are recorded by the suite's one recorder (``tests/support/pyclient.py``); this
adds the views the end-to-end tests read: event tuples and publications per channel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from centrifuge import Client

from tests.support.pyclient import Event, Recorder, close_client


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
    def __init__(self, ws_url: str, token: str = "", get_token: Callable[[], Awaitable[str]] | None = None) -> None:
        self.recorder = Recorder()
        self.client = Client(
            ws_url,
            events=self.recorder.client_handler(),
            token=token,
            get_token=get_token,
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
