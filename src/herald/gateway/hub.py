"""Local index of who is here: channel → subscriptions, user → connections, id → connection.

Broadcast is "encode once, write many": a publication is turned into push bytes once per node
and encoding (JSON, Protobuf, unidirectional JSON), lazily, the first time a subscriber of that
encoding needs it, and the same bytes object is queued on every subscriber of the encoding.
Delta subscribers (spec §2.2 ``delta``) get a fossil delta against the previous publication
of the channel, computed once per publication, or the full payload when they do not hold that
previous one (first publication, after a gap or a recovery). Queuing never awaits; each
connection's queue is written out once per event-loop tick by the :class:`Flusher`, so a
slow subscriber costs the others nothing (its own write buffer grows until it is cut off).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from msgspec import structs

from herald.gateway.codecs import fossil
from herald.gateway.codecs.base import Codec
from herald.gateway.codecs.messages import ClientInfo, JoinLeave, Publication, Push


class Outbox(Protocol):
    """What the hub needs from a connection (implemented by ``client.Client``)."""

    @property
    def id(self) -> str: ...

    @property
    def user(self) -> str: ...

    @property
    def codec(self) -> Codec: ...

    def enqueue(self, data: bytes) -> None: ...

    def insufficient_state(self, sub: Subscription) -> None: ...


class Subscription:
    """One connection's subscription to one channel, and its stream position."""

    __slots__ = (
        "__weakref__",  # its token's expiry check holds it weakly (timers.weakly)
        "buffer",
        "chan_info",
        "channel",
        "codec",
        "delta",
        "delta_base",
        "epoch",
        "expires_at",
        "granted_by",
        "join_leave",
        "lost",
        "offset",
        "outbox",
        "positioned",
        "presence",
        "publishes_join_leave",
        "recoverable",
        "server_side",
    )

    def __init__(self, outbox: Outbox, channel: str, *, server_side: bool = False) -> None:
        self.outbox = outbox
        self.codec = outbox.codec  # kept here: the broadcast loop reads it for every subscriber
        self.channel = channel
        self.delta = False  # fossil delta negotiated (spec §2.2)
        # The payload this delta subscriber holds (the last one it got): deltas are made against it.
        self.delta_base: bytes | None = None
        self.server_side = server_side
        self.positioned = False
        self.recoverable = False
        self.join_leave = False  # push join/leave to this subscriber
        self.presence = False  # tracked in channel presence
        self.publishes_join_leave = False  # announces its own join/leave
        self.offset = 0
        self.epoch = ""
        self.expires_at: float | None = None
        self.chan_info: bytes | None = None
        self.granted_by = ""  # "grant", "token", "user", "namespace", "insecure", "server"
        # Publications with their epoch (and encoded join/leave pushes) that arrive while the
        # subscribe reply is being prepared (spec §6.3 step 4); None once the subscription is live.
        self.buffer: list[tuple[Publication, str] | bytes] | None = []
        # Set once a gap was reported: the subscription is being dropped, deliver nothing more.
        self.lost = False

    def accept(self, offset: int, epoch: str) -> bool:
        """Position check for a positioned subscription (spec §6.2); False = do not deliver."""
        if self.lost:
            return False
        if offset == 0:
            return True  # published with skip_history: not part of the stream, no position
        if not self.epoch:
            self.epoch = epoch  # positioned before the stream had an epoch: adopt the first one
        if epoch != self.epoch or offset > self.offset + 1:
            self.report_lost()
            return False
        if offset <= self.offset:
            return False  # already delivered (e.g. inside a recovered batch)
        self.offset = offset
        return True

    def report_lost(self) -> None:
        """Tell the connection once that this subscription missed something (insufficient state)."""
        if not self.lost:
            self.lost = True
            self.outbox.insufficient_state(self)


DELTA_CACHE_SIZE = 1024


class Flusher:
    """Writes every connection with queued messages once per loop tick."""

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Flushable] = []
        self._scheduled = False

    def mark(self, conn: Flushable) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()


class Flushable(Protocol):
    def flush(self) -> None: ...


C = TypeVar("C", bound=Outbox)


class Hub(Generic[C]):
    __slots__ = ("_channels", "_clients", "_deltas", "_last_data", "_users", "deliveries", "num_subs")

    def __init__(self) -> None:
        self.deliveries = 0  # publications queued to subscribers, for metrics
        self.num_subs = 0  # kept, not summed: node heartbeats read it every few seconds
        self._clients: dict[str, C] = {}
        self._users: dict[str, dict[str, C]] = {}
        self._channels: dict[str, dict[str, Subscription]] = {}
        # The payload of a channel's latest publication, kept for channels with delta subscribers.
        self._last_data: dict[str, bytes] = {}
        self._deltas: OrderedDict[tuple[str, bytes, bytes], bytes] = OrderedDict()

    # --- connections

    def add_client(self, client: C) -> None:
        self._clients[client.id] = client
        self._users.setdefault(client.user, {})[client.id] = client

    def remove_client(self, client: C) -> None:
        self._clients.pop(client.id, None)
        conns = self._users.get(client.user)
        if conns is not None:
            conns.pop(client.id, None)
            if not conns:
                del self._users[client.user]

    def client(self, client_id: str) -> C | None:
        return self._clients.get(client_id)

    def user_clients(self, user: str) -> list[C]:
        return list(self._users.get(user, {}).values())

    def user_connection_count(self, user: str) -> int:
        return len(self._users.get(user, ()))

    def all_clients(self) -> list[C]:
        return list(self._clients.values())

    # --- subscriptions

    def add_subscription(self, sub: Subscription) -> bool:
        """Index a subscription; True when it is the node's first on that channel."""
        subs = self._channels.get(sub.channel)
        first = subs is None
        if subs is None:
            subs = self._channels[sub.channel] = {}
        if sub.outbox.id not in subs:
            self.num_subs += 1
        subs[sub.outbox.id] = sub
        return first

    def remove_subscription(self, sub: Subscription) -> bool:
        """Drop a subscription; True when the channel has no subscribers left on this node."""
        subs = self._channels.get(sub.channel)
        if subs is None or subs.get(sub.outbox.id) is not sub:
            return False
        del subs[sub.outbox.id]
        self.num_subs -= 1
        if not subs:
            del self._channels[sub.channel]
            self._last_data.pop(sub.channel, None)
            return True
        return False

    def has_channel(self, channel: str) -> bool:
        return channel in self._channels

    def channels(self) -> Iterator[tuple[str, int]]:
        for channel, subs in self._channels.items():
            yield channel, len(subs)

    @property
    def num_clients(self) -> int:
        return len(self._clients)

    @property
    def num_users(self) -> int:
        return len(self._users)

    @property
    def num_channels(self) -> int:
        return len(self._channels)

    # --- delivery

    def broadcast_publication(self, channel: str, pub: Publication, epoch: str, *, delta: bool = False) -> None:
        """Queue a publication on every subscriber; ``delta``: it may go as a delta against the
        channel's previous publication (published with ``delta``, or ``delta_publish``)."""
        subs = self._channels.get(channel)
        if not subs:
            return
        frames: dict[Codec, bytes] = {}
        delta_subs: list[Subscription] | None = None
        offset = pub.offset
        self.deliveries += len(subs)
        for sub in subs.values():
            if sub.buffer is not None:
                sub.buffer.append((pub, epoch))
            elif not sub.positioned or sub.accept(offset, epoch):
                if sub.delta:
                    if delta_subs is None:
                        delta_subs = []
                    delta_subs.append(sub)
                    continue
                codec = sub.codec
                data = frames.get(codec)
                if data is None:
                    data = frames[codec] = codec.encode_publication_push(channel, pub)
                sub.outbox.enqueue(data)
        if delta_subs is not None:
            self._broadcast_deltas(channel, pub, delta_subs, delta)
        elif self._last_data:
            self._last_data.pop(channel, None)

    def delta_between(self, channel: str, base: bytes, current: bytes) -> bytes:
        """A fossil delta from ``base`` to ``current``, remembered for the next subscriber that
        needs the same one (recoveries and the subscribe window go subscriber by subscriber)."""
        key = (channel, base, current)
        patch = self._deltas.get(key)
        if patch is None:
            patch = self._deltas[key] = fossil.create(base, current)
            if len(self._deltas) > DELTA_CACHE_SIZE:
                self._deltas.popitem(last=False)
        return patch

    def _broadcast_deltas(self, channel: str, pub: Publication, subs: list[Subscription], delta: bool) -> None:
        current = bytes(pub.data)
        previous = self._last_data.get(channel) if delta else None
        self._last_data[channel] = current
        fulls: dict[Codec, bytes] = {}
        deltas: dict[Codec, bytes | None] = {}
        patch: bytes | None = None
        for sub in subs:
            codec = sub.codec
            data = None
            base = sub.delta_base
            if previous is not None and base is not None and (base is previous or base == previous):
                if codec in deltas:
                    data = deltas[codec]
                else:
                    if patch is None:
                        patch = self.delta_between(channel, previous, current)  # once per publication
                    data = deltas[codec] = encode_delta(codec, channel, pub, patch)
            if data is None:
                data = fulls.get(codec)
                if data is None:
                    data = fulls[codec] = encode_full(codec, channel, pub)
            sub.delta_base = current
            sub.outbox.enqueue(data)

    def broadcast_join_leave(self, channel: str, info: ClientInfo, *, join: bool, force: bool) -> None:
        """Join/leave pushes go to subscribers that asked for them, or to all when forced (spec §3)."""
        subs = self._channels.get(channel)
        if not subs:
            return
        body = JoinLeave(info)
        push = Push(channel=channel, join=body) if join else Push(channel=channel, leave=body)
        frames: dict[Codec, bytes] = {}
        for sub in subs.values():
            if force or sub.join_leave:
                codec = sub.codec
                data = frames.get(codec)
                if data is None:
                    data = frames[codec] = codec.encode_push(push)
                if sub.buffer is None:
                    sub.outbox.enqueue(data)
                else:
                    sub.buffer.append(data)


def encode_full(codec: Codec, channel: str, pub: Publication) -> bytes:
    """A publication to a delta subscriber, whole (its payload as the codec carries deltas)."""
    data = codec.delta_data(bytes(pub.data))
    return codec.encode_publication_push(channel, pub if data is None else structs.replace(pub, data=data))


def encode_delta(codec: Codec, channel: str, pub: Publication, patch: bytes) -> bytes | None:
    """A publication to a delta subscriber as a fossil delta; None when the codec cannot carry it."""
    data = codec.delta_data(patch)
    if data is None:
        return None
    return codec.encode_publication_push(channel, structs.replace(pub, data=data, delta=True))
