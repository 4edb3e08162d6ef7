"""Single-node engine: broker, channel streams (history) and presence kept in process memory.

Everything here is synchronous underneath, so "append to the stream and hand to PUB/SUB" is
atomic per channel by construction. Epochs are 4 random letters (as Centrifugo's memory
engine): a restarted node starts new epochs, which tells recovering clients the stream was
lost (spec §6.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import string
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from herald.gateway.codecs.messages import ClientInfo, Publication, StreamPosition
from herald.gateway.engines.broker import (
    BrokerEventHandler,
    HistoryFilter,
    HistoryPage,
    PublishOptions,
    PublishResult,
    UnrecoverablePosition,
)

_SWEEP_INTERVAL = 30.0


def new_epoch() -> str:
    return "".join(random.choices(string.ascii_letters, k=4))


@dataclass(slots=True)
class _Stream:
    epoch: str
    top: int = 0
    pubs: deque[Publication] = field(default_factory=deque)
    data_expires: float = 0.0  # monotonic time after which the publications are dropped
    meta_expires: float = 0.0  # monotonic time after which offset and epoch are forgotten


class MemoryBroker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._handler: BrokerEventHandler | None = None
        self._streams: dict[str, _Stream] = {}
        self._results: dict[tuple[str, str], tuple[PublishResult, float]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, handler: BrokerEventHandler) -> None:
        self._handler = handler
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    @property
    def online(self) -> bool:
        return True  # in this process: up as long as the node is

    async def subscribe(self, channel: str) -> None:
        """One node: every publication already reaches the handler."""

    async def unsubscribe(self, channel: str) -> None:
        """One node: nothing to stop."""

    async def publish(self, channel: str, pub: Publication, opts: PublishOptions) -> PublishResult:
        return self.publish_now(channel, pub, opts)

    def publish_now(self, channel: str, pub: Publication, opts: PublishOptions) -> PublishResult:
        now = self._clock()
        key = (channel, opts.idempotency_key) if opts.idempotency_key else None
        if key is not None:
            cached = self._results.get(key)
            if cached is not None and cached[1] > now:
                return PublishResult(cached[0].position, from_cache=True)
        position = StreamPosition()
        if opts.keeps_history:
            stream = self._stream(channel, now, opts.history_meta_ttl)
            self._expire_data(stream, now)
            stream.top += 1
            pub.offset = stream.top
            stream.pubs.append(pub)
            while len(stream.pubs) > opts.history_size:
                stream.pubs.popleft()
            stream.data_expires = now + opts.history_ttl
            position = StreamPosition(stream.top, stream.epoch)
        result = PublishResult(position)
        if key is not None:
            self._results[key] = (result, now + opts.idempotent_result_ttl)
        assert self._handler is not None, "broker not started"
        self._handler.handle_publication(channel, pub, position.epoch)
        return result

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        assert self._handler is not None
        self._handler.handle_join(channel, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        assert self._handler is not None
        self._handler.handle_leave(channel, info)

    async def publish_control(self, data: bytes) -> None:
        """There are no other nodes."""

    async def history(self, channel: str, flt: HistoryFilter, history_meta_ttl: float) -> HistoryPage:
        now = self._clock()
        stream = self._stream(channel, now, history_meta_ttl)
        self._expire_data(stream, now)
        top = StreamPosition(stream.top, stream.epoch)
        since = flt.since
        if since is not None and since.epoch and since.epoch != stream.epoch:
            raise UnrecoverablePosition(channel)
        if flt.limit == 0 or not stream.pubs:
            return HistoryPage([], top)
        pubs = list(stream.pubs)
        first = pubs[0].offset  # offsets in a stream are contiguous
        if flt.reverse:
            if since is not None:
                pubs = pubs[: max(0, since.offset - first)]
            pubs.reverse()
        elif since is not None:
            pubs = pubs[max(0, since.offset - first + 1) :]
        if flt.limit > 0:
            pubs = pubs[: flt.limit]
        return HistoryPage(pubs, top)

    async def remove_history(self, channel: str) -> None:
        stream = self._streams.get(channel)
        if stream is not None:
            stream.pubs.clear()

    def _stream(self, channel: str, now: float, meta_ttl: float) -> _Stream:
        """The channel's stream; a new epoch at offset 0 when its meta expired (spec §6.1)."""
        stream = self._streams.get(channel)
        if stream is None or stream.meta_expires <= now:
            stream = self._streams[channel] = _Stream(epoch=new_epoch())
        # Every access keeps the meta alive for another meta ttl; 0 means it never expires.
        stream.meta_expires = now + meta_ttl if meta_ttl > 0 else math.inf
        return stream

    @staticmethod
    def _expire_data(stream: _Stream, now: float) -> None:
        if stream.pubs and stream.data_expires <= now:
            stream.pubs.clear()

    def sweep(self) -> None:
        """Forget streams whose meta expired and idempotency results past their window."""
        now = self._clock()
        for channel in [c for c, s in self._streams.items() if s.meta_expires <= now]:
            del self._streams[channel]
        for stream in self._streams.values():
            self._expire_data(stream, now)
        for key in [k for k, (_, exp) in self._results.items() if exp <= now]:
            del self._results[key]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL)
            self.sweep()


class MemoryPresence:
    """Channel presence; entries expire ``ttl`` seconds after they were last added, as in a shared
    engine, so a connection that is never removed (it cannot happen on one node, but the contract is
    the same) does not linger. The node renews live entries every presence update interval."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._channels: dict[str, dict[str, tuple[ClientInfo, float]]] = {}

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo, ttl: float) -> None:
        expires = self._clock() + ttl if ttl > 0 else math.inf
        self._channels.setdefault(channel, {})[client_id] = (info, expires)

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        entries = self._channels.get(channel)
        if entries is not None:
            entries.pop(client_id, None)
            if not entries:
                del self._channels[channel]

    async def presence(self, channel: str) -> Mapping[str, ClientInfo]:
        return {client_id: info for client_id, (info, _) in self._live(channel).items()}

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        entries = self._live(channel)
        return len(entries), len({info.user for info, _ in entries.values()})

    def _live(self, channel: str) -> dict[str, tuple[ClientInfo, float]]:
        """The channel's entries, after dropping the expired ones."""
        entries = self._channels.get(channel)
        if entries is None:
            return {}
        now = self._clock()
        for client_id in [c for c, (_, expires) in entries.items() if expires <= now]:
            del entries[client_id]
        if not entries:
            del self._channels[channel]
        return entries
