"""Composition root: config → engine → node → API → HTTP server; signals and graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket

from aiohttp import web

from herald.gateway.api import ServerAPI
from herald.gateway.broker import Broker, PresenceManager
from herald.gateway.config import Config
from herald.gateway.memory import MemoryBroker, MemoryPresence
from herald.gateway.node import Node, RevocationStore
from herald.gateway.transport import HttpServer

log = logging.getLogger("herald")


def build_engine(config: Config) -> tuple[Broker, PresenceManager, RevocationStore | None]:
    if config.engine == "redis":
        from herald.gateway.redis_broker import RedisEngine  # needs the "redis" extra

        engine = RedisEngine(config.redis_address, prefix=config.redis_prefix)
        return engine.broker, engine.presence, engine.revocations
    return MemoryBroker(), MemoryPresence(), None


class Gateway:
    """A running node: start, serve, drain, stop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        broker, presence, revocations = build_engine(config)
        name = config.name or f"{socket.gethostname()}_{config.port}"
        self.node = Node(config, broker, presence, name=name, revocation_store=revocations)
        self.server = HttpServer(self.node, ServerAPI(self.node))
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        await self.node.start()
        # Generous listen backlog: a reconnect storm arrives all at once.
        self._runner = web.AppRunner(self.server.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.config.address or None,
            self.config.port,
            backlog=4096,
            shutdown_timeout=self.config.shutdown_timeout,
        )
        await site.start()
        log.info(
            "herald %s node %s listening on %s:%d (engine %s)",
            self.node.version,
            self.node.name,
            self.config.address or "*",
            self.config.port,
            self.config.engine,
        )

    async def stop(self) -> None:
        self.server.accepting = False
        await self.node.drain(self.config.shutdown_drain_window)
        # Give close handshakes a moment, then stop the server and the engine.
        await asyncio.sleep(0.2)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.node.close()


async def serve(config: Config) -> None:
    gateway = Gateway(config)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining connections over %.1fs", config.shutdown_drain_window)
    await gateway.stop()


def run(config: Config) -> None:
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
