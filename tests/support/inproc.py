"""A node and its client connections in the test's own event loop, over a fake transport.

For what a real socket cannot stage on demand: a broker that pauses inside a stream read so
publications arrive while a subscribe is being answered, or a publication that never arrived.
The frames a connection writes are recorded as bytes and decoded per message.

    async with in_process_node(broker=GatedBroker()) as node:
        client, conn = await connected(node)
        reply = await command(client, conn, "subscribe", {"channel": "critical:x"})
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from herald import errors
from herald.gateway.config import parse_config
from herald.gateway.engines.broker import HistoryFilter, HistoryPage, PresenceManager
from herald.gateway.engines.memory import MemoryBroker, MemoryPresence
from herald.gateway.node import Node
from herald.gateway.session.client import Client
from tests.support.gateway import base_config
from tests.support.tokens import token


class FakeConnection:
    """Records what the client writes and how it closes."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed: tuple[int, str] | None = None
        self._read = 0  # messages already handed out by take()

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def write_batch(self, messages: list[bytes]) -> None:
        self.frames.append(b"\n".join(messages))

    def write_buffer_size(self) -> int:
        return 0

    def close(self, code: int, reason: str, *, linger: bool = True) -> None:
        self.closed = (code, reason)

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(line) for frame in self.frames for line in frame.split(b"\n")]

    def take(self) -> list[dict[str, Any]]:
        """Messages written since the last call."""
        messages = self.messages()
        fresh, self._read = messages[self._read :], len(messages)
        return fresh

    def pushes(self) -> list[dict[str, Any]]:
        return [m["push"] for m in self.messages() if "push" in m]


class GatedBroker(MemoryBroker):
    """A memory broker whose stream reads can be held open, before or after reading.

    ``hold(after_read=True)`` models the usual race: the read is done, its answer is still on the
    way, and newer publications reach the node meanwhile. ``after_read=False`` models
    publications that land both in the buffer and in what is then read.
    """

    def __init__(self) -> None:
        super().__init__()
        self._gate: asyncio.Event | None = None
        self._after_read = True
        self.waiting = asyncio.Event()

    def hold(self, *, after_read: bool = True) -> None:
        self._gate = asyncio.Event()
        self._after_read = after_read
        self.waiting.clear()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    async def history(self, channel: str, flt: HistoryFilter, history_meta_ttl: float) -> HistoryPage:
        gate = self._gate
        if gate is None:
            return await super().history(channel, flt, history_meta_ttl)
        if not self._after_read:
            self.waiting.set()
            await gate.wait()
        page = await super().history(channel, flt, history_meta_ttl)
        if self._after_read:
            self.waiting.set()
            await gate.wait()
        return page


@asynccontextmanager
async def in_process_node(
    broker: MemoryBroker | None = None, presence: PresenceManager | None = None, **config: Any
) -> AsyncIterator[Node]:
    cfg, _ = parse_config(base_config(**config), {})
    node = Node(cfg, broker or MemoryBroker(), presence or MemoryPresence())
    await node.start()
    try:
        yield node
    finally:
        for client in node.hub.all_clients():
            client.disconnect(errors.DISCONNECT_CONNECTION_CLOSED)
        await settle()
        await node.close()


async def settle() -> None:
    """Let queued callbacks (the flusher, spawned tasks) run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def connected(node: Node, **claims: Any) -> tuple[Client, FakeConnection]:
    conn = FakeConnection()
    client = Client(node, conn)
    await client.handle_frame(json.dumps({"id": 1, "connect": {"token": token(**claims)}}))
    await settle()
    (reply,) = conn.take()
    assert "connect" in reply, reply
    return client, conn


async def send(client: Client, cmd_id: int, method: str, params: dict[str, Any]) -> None:
    await client.handle_frame(json.dumps({"id": cmd_id, method: params}))
    await settle()
