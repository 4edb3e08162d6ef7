"""Engine round trips timed at the seam: a Broker and a PresenceManager that time each call of
the engine under them (``herald_engine_duration_seconds`` by operation, see ``metrics.py``).

Wrapped around whichever engine is configured (memory or Redis) when ``prometheus`` is on, so
the node and the engines know nothing of it. One call = one observation, failures included
(an outage shows as calls that took their timeout). The operation label is the method name,
a fixed set: never a channel.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from herald.gateway.codecs.messages import ClientInfo, Publication
from herald.gateway.engines.broker import (
    Broker,
    BrokerEventHandler,
    HistoryFilter,
    HistoryPage,
    PresenceManager,
    PublishOptions,
    PublishResult,
)
from herald.gateway.stats import Timings

_clock = time.perf_counter


class TimedBroker:
    """A :class:`Broker` that times every round trip of the one it wraps."""

    def __init__(self, inner: Broker, timings: Timings) -> None:
        self.inner = inner
        self.timings = timings

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # what an engine offers beyond the seam

    async def start(self, handler: BrokerEventHandler) -> None:
        await self.inner.start(handler)

    @property
    def online(self) -> bool:
        return self.inner.online

    async def close(self) -> None:
        await self.inner.close()

    async def subscribe(self, channel: str) -> None:
        started = _clock()
        try:
            await self.inner.subscribe(channel)
        finally:
            self.timings.observe("subscribe", _clock() - started)

    async def unsubscribe(self, channel: str) -> None:
        started = _clock()
        try:
            await self.inner.unsubscribe(channel)
        finally:
            self.timings.observe("unsubscribe", _clock() - started)

    async def publish(self, channel: str, pub: Publication, opts: PublishOptions) -> PublishResult:
        started = _clock()
        try:
            return await self.inner.publish(channel, pub, opts)
        finally:
            self.timings.observe("publish", _clock() - started)

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        started = _clock()
        try:
            await self.inner.publish_join(channel, info)
        finally:
            self.timings.observe("publish_join", _clock() - started)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        started = _clock()
        try:
            await self.inner.publish_leave(channel, info)
        finally:
            self.timings.observe("publish_leave", _clock() - started)

    async def publish_control(self, data: bytes) -> None:
        started = _clock()
        try:
            await self.inner.publish_control(data)
        finally:
            self.timings.observe("publish_control", _clock() - started)

    async def history(self, channel: str, flt: HistoryFilter, history_meta_ttl: float) -> HistoryPage:
        started = _clock()
        try:
            return await self.inner.history(channel, flt, history_meta_ttl)
        finally:
            self.timings.observe("history", _clock() - started)

    async def remove_history(self, channel: str) -> None:
        started = _clock()
        try:
            await self.inner.remove_history(channel)
        finally:
            self.timings.observe("remove_history", _clock() - started)


class TimedPresence:
    """A :class:`PresenceManager` that times every round trip of the one it wraps."""

    def __init__(self, inner: PresenceManager, timings: Timings) -> None:
        self.inner = inner
        self.timings = timings

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo, ttl: float) -> None:
        started = _clock()
        try:
            await self.inner.add_presence(channel, client_id, info, ttl)
        finally:
            self.timings.observe("add_presence", _clock() - started)

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        started = _clock()
        try:
            await self.inner.remove_presence(channel, client_id, user)
        finally:
            self.timings.observe("remove_presence", _clock() - started)

    async def presence(self, channel: str) -> Mapping[str, ClientInfo]:
        started = _clock()
        try:
            return await self.inner.presence(channel)
        finally:
            self.timings.observe("presence", _clock() - started)

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        started = _clock()
        try:
            return await self.inner.presence_stats(channel)
        finally:
            self.timings.observe("presence_stats", _clock() - started)


def timed(broker: Broker, presence: PresenceManager) -> tuple[TimedBroker, TimedPresence]:
    """The engine's broker and presence manager, timed into one shared :class:`Timings`."""
    timings = Timings()
    return TimedBroker(broker, timings), TimedPresence(presence, timings)
