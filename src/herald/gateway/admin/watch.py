"""Watching a channel live from the admin page: a server-side subscriber feeding one response.

The watcher is an outbox the hub delivers to like any connection (``hub.Outbox``): it joins
the channel's subscribers on this node through ``node.add_subscription``, so the engine brings
publications from every node here, and each encoded push is handed to the admin's HTTP response
as a Server-Sent Event. It is not positioned and keeps no history: it shows what is published
while the page watches. A watcher counts in this node's ``num_subs`` and in the ``channels``
survey, as any subscriber does, but not in presence. A slow reader is cut off rather than
buffered without bound.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Final

from herald.gateway.codecs.base import Codec
from herald.gateway.codecs.json import UNI_JSON
from herald.gateway.codecs.messages import ClientInfo
from herald.gateway.hub import Subscription
from herald.gateway.node import Node

QUEUE_LIMIT: Final = 1000  # pushes a watching page may fall behind before it is cut off


class Watcher:
    """One admin page watching one channel (implements ``hub.Outbox``)."""

    def __init__(self, node: Node, channel: str) -> None:
        self.node = node
        self.id = f"admin-watch-{uuid.uuid4()}"
        self.user = ""
        # Bare pushes ``{"channel":..,"pub":{..}}``, as unidirectional clients get them (spec §1.7).
        self.codec: Codec = UNI_JSON
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.overflowed = False
        self.sub = Subscription(self, channel, server_side=True)
        self.sub.join_leave = True  # shown where the namespace publishes them
        self.sub.buffer = None  # live from the start: nothing to merge with (not positioned)

    async def start(self) -> None:
        await self.node.add_subscription(self.sub)

    async def stop(self) -> None:
        await self.node.remove_subscription(self.sub, ClientInfo(user="", client=self.id))

    def enqueue(self, data: bytes) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.overflowed = True
            self.queue.put_nowait(None)  # the reader ends the stream
            return
        self.queue.put_nowait(data)

    def insufficient_state(self, sub: Subscription) -> None:
        """Never called: the watcher is not positioned."""

    def close(self) -> None:
        """End the stream (the gateway is shutting down)."""
        self.queue.put_nowait(None)
