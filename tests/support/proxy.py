"""A loopback TCP proxy in front of the gateway that tests can cut and hold, like a flaky network.

    async with TcpProxy(gw.port) as proxy:
        client = Client(proxy.ws_url, ...)      # the SDK connects through the proxy
        proxy.hold()                            # new connections are refused from now on
        proxy.cut_all()                         # abort every live connection: no close frame, RST
        ...                                     # the client is away for as long as the test wants
        proxy.release()                         # the SDK's next reconnect attempt gets through

Cutting aborts both TCP legs, so the client and the gateway each see the connection die
without a WebSocket close frame, exactly as when a phone loses its network.

Stalling is the quieter failure: ``proxy.stall(where)`` stops forwarding, both ways, on the live
connections ``where`` selects (by what their client sent first, ``link.sent``) and keeps them
open, as a stuck NAT or a half-open connection does: nothing arrives and nothing breaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from tests.support.timing import seconds

_CHUNK = 65_536


@dataclass(eq=False)
class Link:
    """One proxied connection: the client's leg and the gateway's leg."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: The first bytes the client sent (up to 64 KiB), to tell connections apart.
    sent: bytearray = field(default_factory=bytearray)
    stalled: bool = False
    aborted: asyncio.Event = field(default_factory=asyncio.Event)

    def abort(self) -> None:
        self.aborted.set()
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._links: set[Link] = set()
        self._held = False
        self.port = 0
        #: Connections accepted and forwarded so far (refused ones while held are not counted).
        self.accepted = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._abort(list(self._links))

    @property
    def live(self) -> int:
        return len(self._links)

    def hold(self) -> None:
        """Refuse new connections (the client stays away) until :meth:`release`."""
        self._held = True

    def release(self) -> None:
        self._held = False

    def cut_all(self) -> int:
        """Abort every live connection; returns how many were cut."""
        links = list(self._links)
        for link in links:
            link.abort()
        return len(links)

    def stall(self, where: Callable[[Link], bool] = lambda link: True) -> int:
        """Stop forwarding on the live connections ``where`` selects, keeping them open; returns
        how many. A stalled connection stays stalled until it is closed."""
        chosen = [link for link in self._links if where(link)]
        for link in chosen:
            link.stalled = True
        return len(chosen)

    def cut_random(self, rng: random.Random) -> bool:
        """Abort one live connection chosen by ``rng``; False when there was none."""
        if not self._links:
            return False
        rng.choice(sorted(self._links, key=id)).abort()
        return True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._held:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        link = Link(writer, up_writer)
        self._links.add(link)
        self.accepted += 1
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link, record=True)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)
        for w in (writer, up_writer):
            w.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link, *, record: bool = False
    ) -> None:
        try:
            while chunk := await reader.read(_CHUNK):
                if record and len(link.sent) < _CHUNK:
                    link.sent += chunk[: _CHUNK - len(link.sent)]
                if link.stalled:
                    await link.aborted.wait()  # held until the proxy drops the connection
                    return
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # an orderly close is passed on as one
        except OSError:
            link.abort()  # a broken leg breaks the other one too

    async def _abort(self, links: list[Link]) -> None:
        for link in links:
            link.abort()
        tasks = [task for link in links for task in link.tasks]
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, timeout=seconds(5))
