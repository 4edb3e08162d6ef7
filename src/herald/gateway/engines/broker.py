"""The seams between a node and its engine: Broker, PresenceManager, BrokerEventHandler.

A Broker moves publications between nodes and keeps channel streams (history):
``publish`` appends to the stream *and* hands the publication to PUB/SUB as one atomic step
per channel, so a subscriber that read the stream top and then receives live publications
never sees a gap or a duplicate it cannot detect by offset (spec §6, §9.1).

The memory engine (one node) and the Redis engine (many nodes) implement the same contract,
checked by one contract test suite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from herald.gateway.codecs.messages import ClientInfo, Publication, StreamPosition


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """How a publication is stored (zero history = ephemeral channel)."""

    history_size: int = 0
    history_ttl: float = 0.0
    history_meta_ttl: float = 0.0
    idempotency_key: str = ""
    # How long a publish result is remembered for ``idempotency_key`` (decisions §6).
    idempotent_result_ttl: float = 300.0

    @property
    def keeps_history(self) -> bool:
        return self.history_size > 0 and self.history_ttl > 0


@dataclass(frozen=True, slots=True)
class PublishResult:
    position: StreamPosition  # offset 0 and epoch "" when the channel keeps no history
    from_cache: bool = False  # True when an idempotency key matched an earlier publish


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    since: StreamPosition | None = None
    limit: int = 0  # 0 = no publications (stream top only), -1 = all
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class HistoryPage:
    publications: list[Publication]
    top: StreamPosition


class UnrecoverablePosition(Exception):
    """``since.epoch`` names an epoch the stream no longer has (error 112)."""


class BrokerEventHandler(Protocol):
    """Implemented by the node: what arrives from the broker for channels this node watches."""

    def handle_publication(self, channel: str, pub: Publication, epoch: str) -> None: ...

    def handle_join(self, channel: str, info: ClientInfo) -> None: ...

    def handle_leave(self, channel: str, info: ClientInfo) -> None: ...

    def handle_control(self, data: bytes) -> None: ...


class Broker(Protocol):
    async def start(self, handler: BrokerEventHandler) -> None: ...

    @property
    def online(self) -> bool:
        """Whether the engine serves right now (False while its connection is down)."""

    async def close(self) -> None: ...

    async def subscribe(self, channel: str) -> None:
        """Start receiving the channel's publications on this node."""

    async def unsubscribe(self, channel: str) -> None: ...

    async def publish(self, channel: str, pub: Publication, opts: PublishOptions) -> PublishResult: ...

    async def publish_join(self, channel: str, info: ClientInfo) -> None: ...

    async def publish_leave(self, channel: str, info: ClientInfo) -> None: ...

    async def publish_control(self, data: bytes) -> None:
        """Send a control message to every *other* node."""

    async def history(self, channel: str, flt: HistoryFilter, history_meta_ttl: float) -> HistoryPage:
        """Publications and the stream top; creates the stream meta (epoch) if absent.

        Raises :class:`UnrecoverablePosition` when ``flt.since.epoch`` is set and stale.
        """

    async def remove_history(self, channel: str) -> None:
        """Drop stored publications, keep offset and epoch."""


class PresenceManager(Protocol):
    async def add_presence(self, channel: str, client_id: str, info: ClientInfo, ttl: float) -> None: ...

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None: ...

    async def presence(self, channel: str) -> Mapping[str, ClientInfo]: ...

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        """(number of clients, number of distinct users)."""


class EngineUnavailable(Exception):
    """The engine cannot be reached right now (a broker outage): clients get temporary error 100,
    the server API error 100, and nothing the failed operation started is left behind."""
