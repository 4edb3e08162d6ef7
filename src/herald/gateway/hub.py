"""Local index of who is here: channel → subscriptions, user → connections, id → connection.

Broadcast is "encode once, write many": a publication is turned into push bytes once per node
and the same bytes object is queued on every subscriber. Queuing never awaits; each
connection's queue is written out once per event-loop tick by the :class:`Flusher`, so a
slow subscriber costs the others nothing (its own write buffer grows until it is cut off).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from herald.gateway.codecs.json import encode_publication_push, encode_push
from herald.gateway.codecs.messages import ClientInfo, JoinLeave, Publication, Push


class Outbox(Protocol):
    """What the hub needs from a connection (implemented by ``client.Client``)."""

    @property
    def id(self) -> str: ...

    @property
    def user(self) -> str: ...

    def enqueue(self, data: bytes) -> None: ...

    def insufficient_state(self, sub: Subscription) -> None: ...


class Subscription:
    """One connection's subscription to one channel, and its stream position."""

    __slots__ = (
        "__weakref__",  # its token's expiry check holds it weakly (timers.weakly)
        "buffer",
        "chan_info",
        "channel",
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
        self.channel = channel
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
    __slots__ = ("_channels", "_clients", "_users", "deliveries", "num_subs")

    def __init__(self) -> None:
        self.deliveries = 0  # publications queued to subscribers, for metrics
        self.num_subs = 0  # kept, not summed: node heartbeats read it every few seconds
        self._clients: dict[str, C] = {}
        self._users: dict[str, dict[str, C]] = {}
        self._channels: dict[str, dict[str, Subscription]] = {}

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

    def broadcast_publication(self, channel: str, pub: Publication, epoch: str) -> None:
        subs = self._channels.get(channel)
        if not subs:
            return
        data = encode_publication_push(channel, pub)
        offset = pub.offset
        self.deliveries += len(subs)
        for sub in subs.values():
            if sub.buffer is not None:
                sub.buffer.append((pub, epoch))
            elif not sub.positioned or sub.accept(offset, epoch):
                sub.outbox.enqueue(data)

    def broadcast_join_leave(self, channel: str, info: ClientInfo, *, join: bool, force: bool) -> None:
        """Join/leave pushes go to subscribers that asked for them, or to all when forced (spec §3)."""
        subs = self._channels.get(channel)
        if not subs:
            return
        body = JoinLeave(info)
        data = encode_push(Push(channel=channel, join=body) if join else Push(channel=channel, leave=body))
        for sub in subs.values():
            if force or sub.join_leave:
                if sub.buffer is None:
                    sub.outbox.enqueue(data)
                else:
                    sub.buffer.append(data)
